"""The lab's compute adapter on a lab of its own: stop, start, rejoin (rewind or rebuild), freeze.

The lab here is real: a split brain is made by promoting the standby with
``pg_promote()`` while the old primary still takes writes, and the adapter
must turn the old primary into a standby of the new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from failover.config import CONFIG_FILE_NAME, load_config
from failover.dns.route53 import Route53Settings
from failover.waiting import wait_for
from infra.lab import moto
from infra.lab.exceptions import LabError, LabNotRunning
from infra.lab.lab import Lab
from infra.lab.processes import ProcessRecord, descendants, is_alive, state_of
from infra.lab.status import lab_status
from infra.providers.lab import LabCompute
from infra.providers.lab_rejoin import ALREADY, REBUILT, REWOUND
from tests.conftest import RunningLab, running_lab

pytestmark = pytest.mark.lab

# Its own subnet, away from the session lab (127.77) and the lifecycle tests (127.78).
SUBNET = os.environ.get("FAILOVER_TEST_COMPUTE_SUBNET", "127.89")
SITES = ("aws", "hetzner")


@dataclass(frozen=True)
class ComputeLab(RunningLab):
    """A lab of this module's own and its compute adapter."""

    compute: LabCompute

    def rows(self, site: str, query: str, *params: object) -> list[tuple[Any, ...]]:
        with self.endpoint(site).connect(timeout=3) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def roles(self) -> tuple[str, str]:
        """(primary, standby) as the servers say."""
        standby = {s: self.rows(s, "SELECT pg_is_in_recovery()")[0][0] for s in SITES}
        primaries = [s for s in SITES if not standby[s]]
        assert len(primaries) == 1, standby
        return primaries[0], next(s for s in SITES if s != primaries[0])

    def record(self, site: str) -> ProcessRecord:
        return self.record_of(f"postgres@{site}")

    def record_of(self, part: str) -> ProcessRecord:
        state = self.lab.state()
        assert state is not None
        record = state.process(part)
        assert record is not None
        return record

    def write(self, site: str) -> str:
        token = f"{site}-{uuid.uuid4().hex[:8]}"
        self.rows(site, "INSERT INTO rejoin_probe VALUES (%s)", token)
        return token

    def has(self, site: str, token: str) -> bool:
        return bool(self.rows(site, "SELECT 1 FROM rejoin_probe WHERE token = %s", token))

    def streams_to(self, primary: str) -> dict[str, str]:
        return {name: state for name, state in self.rows(
            primary, "SELECT application_name, state FROM pg_stat_replication")}


def _lab_processes(state_dir: Path) -> list[int]:
    """PIDs whose command line mentions the state dir (none may outlive ``down``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(state_dir) in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def clab() -> Iterator[ComputeLab]:
    with running_lab(SUBNET, "failover-test-compute-") as started:
        state_dir = started.lab.paths.root
        ctx = ComputeLab(started.lab, started.layout, started.secrets, LabCompute(state_dir))
        ctx.rows("aws", "CREATE TABLE rejoin_probe (token text PRIMARY KEY)")
        yield ctx
    # lab down stopped whatever PIDs lab.json held then, rejoined servers included.
    leftovers = _lab_processes(state_dir)
    # Ours (their command lines name this test's private temp dir), lost by lab.json:
    # stop them by PID so that one failure does not leave servers behind.
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert leftovers == [], f"processes outlived lab down: {leftovers}"


def _split_brain(c: ComputeLab, old: str, new: str) -> tuple[str, str, str]:
    """Promote ``new`` while ``old`` still takes writes; returns (shared, new's, old's) rows."""
    shared = c.write(old)
    wait_for(lambda: c.has(new, shared), timeout=10, what=f"{new} to replay the shared row",
             retry_on=())
    assert c.rows(new, "SELECT pg_promote()") == [(True,)]
    return shared, c.write(new), c.write(old)  # old's row: the divergent timeline


def _assert_follows(c: ComputeLab, site: str, primary: str, rows: tuple[str, str, str]) -> None:
    shared, new_row, divergent = rows
    assert c.roles() == (primary, site)
    assert c.streams_to(primary) == {site: "streaming"}
    wait_for(lambda: c.has(site, new_row), timeout=10, what=f"{site} to replay {primary}'s row",
             retry_on=())
    assert c.has(site, shared)
    assert not c.has(site, divergent)
    later = c.write(primary)  # and it keeps following
    wait_for(lambda: c.has(site, later), timeout=10, what=f"{site} to replay a later row",
             retry_on=())


def test_rejoin_rewinds_a_diverged_old_primary_both_ways(clab: ComputeLab) -> None:
    c = clab
    assert c.roles() == ("aws", "hetzner")
    for old, new in (("aws", "hetzner"), ("hetzner", "aws")):
        before = c.record(old)
        rows = _split_brain(c, old, new)
        # Both are primaries now: the split brain the engine must end.
        assert [c.rows(s, "SELECT pg_is_in_recovery()") for s in SITES] == [[(False,)]] * 2
        t0 = time.monotonic()
        how = c.compute.rejoin_database(old, new)
        took = time.monotonic() - t0
        print(f"rejoin {old} -> standby of {new}: {how} in {took:.2f}s")
        assert how == REWOUND
        _assert_follows(c, old, new, rows)

        running = c.record(old)
        assert c.compute.rejoin_database(old, new) == ALREADY.format(primary=new)
        assert c.record(old) == running  # left alone: not stopped, not restarted

        # lab.json holds the new server: status probes it, running_state accepts
        # it, `lab up` reports the lab as running, `lab down` will stop it.
        after = c.record(old)
        assert after.pid != before.pid and is_alive(after) and not is_alive(before)
        c.lab.running_state()
        state, started = c.lab.up(c.layout)
        assert not started and state.process(f"postgres@{old}") == after
        status = wait_for(lambda: (s := lab_status(c.lab))["healthy"] and s, timeout=20,
                          what="lab status to be healthy after the rejoin", retry_on=())
        assert status["primary"] == new
        assert status["sites"][new]["role"] == "primary"
        assert status["sites"][old]["role"] == "standby"
        assert status["sites"][old]["replication"] == "streaming"
        parts = {p["name"]: p for p in status["parts"]}
        assert parts[f"postgres@{old}"]["pid"] == after.pid
        assert parts[f"app@{old}"]["role"] == "standby"
    assert c.roles() == ("aws", "hetzner")


def test_a_crashed_old_primary_is_recovered_by_pg_rewind_then_rewound(clab: ComputeLab) -> None:
    c = clab
    old, new = c.roles()
    rows = _split_brain(c, old, new)
    # The old primary's machine dies: every process of the server at once.
    record = c.record(old)
    tree = [record.pid, *descendants(record.pid)]
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    # (The postmaster is this process's child: a zombie until is_alive reaps it.)
    wait_for(lambda: not is_alive(record) and all(state_of(p) in (None, "Z") for p in tree),
             timeout=10, what="the killed server's processes to go", retry_on=())
    assert not c.compute.database_running(old)
    log = Path(record.log)
    logged_before = log.stat().st_size

    assert c.compute.rejoin_database(old, new) == REWOUND
    said = log.read_bytes()[logged_before:].decode(errors="replace")
    assert "crash recovery" in said  # pg_rewind ran the target's crash recovery itself
    _assert_follows(c, old, new, rows)


def test_rejoin_rebuilds_when_the_wal_back_to_the_split_is_gone(clab: ComputeLab) -> None:
    c = clab
    old, new = c.roles()
    rows = _split_brain(c, old, new)
    # The old primary ran on and recycled the WAL from where the timelines
    # split: switch segments, checkpoint past them, and remove them as
    # recycling would once they fall out of wal_keep_size.
    c.rows(old, "SELECT pg_switch_wal()")
    c.rows(old, "CHECKPOINT")
    current = c.rows(old, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    c.compute.stop_database(old)
    pg_wal = c.lab.paths.pgdata(old) / "pg_wal"
    recycled = [f for f in pg_wal.iterdir() if len(f.name) == 24 and f.name < current]
    assert recycled
    for segment in recycled:
        segment.unlink()
    log = Path(c.record(old).log)
    logged_before = log.stat().st_size

    t0 = time.monotonic()
    assert c.compute.rejoin_database(old, new) == REBUILT
    took = time.monotonic() - t0
    print(f"rebuilt {old} in {took:.2f}s")
    said = log.read_bytes()[logged_before:].decode(errors="replace")
    assert "pg_rewind" in said and "could not" in said  # why pg_rewind gave up
    _assert_follows(c, old, new, rows)
    assert sorted(p.name for p in c.lab.paths.site(old).iterdir()) == ["pgdata"]


def test_rejoin_rebuilds_a_site_whose_data_dir_is_lost(clab: ComputeLab) -> None:
    c = clab
    primary, standby = c.roles()
    c.compute.stop_database(standby)
    shutil.rmtree(c.lab.paths.pgdata(standby))  # the disk went with the machine
    assert c.compute.rejoin_database(standby, primary) == REBUILT
    row = c.write(primary)
    wait_for(lambda: c.has(standby, row), timeout=10, what="the rebuilt standby to replay",
             retry_on=())


def test_rejoin_restores_the_fenced_hba_and_writes_a_clean_standby_config(
    clab: ComputeLab,
) -> None:
    c = clab
    old, new = c.roles()
    hba_file = c.lab.paths.pgdata(old) / "pg_hba.conf"
    original = hba_file.read_text()
    # What the new primary's auto.conf may carry, and pg_rewind copies over.
    c.rows(new, "ALTER SYSTEM SET synchronous_standby_names = 'somebody'")
    c.rows(new, "ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
    try:
        rows = _split_brain(c, old, new)
        # The engine fences the old primary: no connections but the superuser's.
        hba_file.write_text("host all postgres 127.0.0.0/8 scram-sha-256\n"
                            "host all all 0.0.0.0/0 reject\n")
        c.rows(old, "SELECT pg_reload_conf()")

        assert c.compute.rejoin_database(old, new, hba=original) == REWOUND
    finally:
        c.rows(new, "ALTER SYSTEM RESET synchronous_standby_names")
        c.rows(new, "ALTER SYSTEM RESET synchronous_commit")
    assert hba_file.read_text() == original
    _assert_follows(c, old, new, rows)

    auto = c.lab.paths.pgdata(old) / "postgresql.auto.conf"
    settings = [line.split("=", 1)[0].strip() for line in auto.read_text().splitlines()
                if line and not line.startswith("#")]
    assert settings == ["primary_conninfo"]
    assert "user=replicator " in auto.read_text()
    assert f"host={c.layout.address(new)} " in auto.read_text()
    info = auto.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == c.lab.paths.pgdata(old).stat().st_uid  # the postgres user's
    assert (c.lab.paths.pgdata(old) / "standby.signal").exists()

    # Already a standby: only the hba is brought in line, and reloaded.
    changed = original + "# reviewed\n"
    assert c.compute.rejoin_database(old, new, hba=changed) == ALREADY.format(primary=new)
    assert hba_file.read_text() == changed


def test_stop_and_start_are_idempotent_and_recorded(clab: ComputeLab) -> None:
    c = clab
    primary, standby = c.roles()
    before = c.record(standby)
    c.compute.stop_database(standby)
    c.compute.stop_database(standby)
    assert not c.compute.database_running(standby)
    with pytest.raises(LabNotRunning, match=f"postgres@{standby} stopped"):
        c.lab.running_state()

    c.compute.start_database(standby)
    after = c.record(standby)
    c.compute.start_database(standby)
    assert c.record(standby) == after != before
    assert c.compute.database_running(standby)
    c.lab.running_state()
    wait_for(lambda: c.streams_to(primary).get(standby) == "streaming", timeout=20,
             what="the restarted standby to stream again", retry_on=())


def test_a_frozen_site_does_not_answer_until_thawed(clab: ComputeLab) -> None:
    c = clab
    _, site = c.roles()
    url = f"{c.layout.app_url(site)}/readyz"
    assert httpx.get(url, timeout=5).status_code == 200
    said = c.compute.freeze_site(site)
    try:
        assert said.startswith("froze ") and f"postgres@{site}" in said
        with pytest.raises(httpx.TimeoutException):
            httpx.get(url, timeout=1)
        record = c.record(site)
        for pid in [record.pid, *descendants(record.pid)]:
            assert state_of(pid) in ("T", None), pid  # the whole server tree, not only its root
    finally:
        c.compute.thaw_site(site)
    wait_for(lambda: httpx.get(url, timeout=1).status_code == 200, timeout=10,
             what=f"app@{site} to answer after the thaw", retry_on=httpx.TransportError)
    assert state_of(c.record(site).pid) != "T"


def test_route53_is_a_part_of_its_own_that_freezes_without_aws_s3(clab: ComputeLab) -> None:
    c = clab
    config = load_config(c.lab.paths.root / CONFIG_FILE_NAME)
    route53 = config.dns_providers["route53"]
    assert isinstance(route53, Route53Settings)
    url = urlsplit(route53.endpoint_url or "")
    assert url.hostname and url.port
    assert c.compute.process_at(url.hostname, url.port) == "route53@aws"
    addresses, _ = moto.route53_answer(c.layout, c.secrets, timeout=5)
    assert addresses  # the zone and the app's record are at route53@aws ...
    s3 = moto.client(c.layout, c.secrets, c.layout.s3_endpoint("aws"), "s3", timeout=2)
    assert s3.list_objects_v2(Bucket=c.layout.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    elsewhere = moto.client(c.layout, c.secrets, c.layout.s3_endpoint("aws"), "route53", 5)
    assert elsewhere.list_hosted_zones()["HostedZones"] == []  # ... and not at moto@aws

    said = c.compute.freeze_process("route53@aws")
    try:
        assert said.startswith("froze route53@aws ")
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{c.layout.route53_endpoint}/moto-api/", timeout=1)
        listed = s3.list_objects_v2(Bucket=c.layout.bucket)  # aws's S3 still answers
        assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200
        status = lab_status(c.lab)
        parts = {p["name"]: p for p in status["parts"]}
        assert parts["route53@aws"]["health"] == "failing"
        assert parts["moto@aws"]["health"] == "ok"
        assert status["dns"]["route53"]["error"]
    finally:
        c.compute.thaw_process("route53@aws")
    assert moto.route53_answer(c.layout, c.secrets, timeout=5)[0] == addresses


def test_restore_site_starts_a_dead_route53_again_with_the_zone(clab: ComputeLab) -> None:
    c = clab
    state = c.lab.state()
    assert state is not None
    old, s3 = state.process("route53@aws"), state.process("moto@aws")
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(old), timeout=10, what="route53@aws to die", retry_on=())
    primary, _ = c.roles()

    done = c.compute.restore_site("aws", primary)
    assert [line for line in done if line.startswith(("route53@", "moto@"))] == [
        f"route53@aws started (pid {c.record_of('route53@aws').pid}), zone "
        f"{c.layout.zone} created, answering {primary}",
    ]  # aws's S3 store still ran: left alone
    assert c.record_of("moto@aws") == s3
    assert is_alive(c.record_of("route53@aws"))
    assert moto.route53_answer(c.layout, c.secrets, timeout=5) == (
        [c.layout.address(primary)], c.layout.ttl,
    )
    c.lab.running_state()


def test_a_stopped_standby_rejoins_without_a_rewind(clab: ComputeLab) -> None:
    c = clab
    primary, standby = c.roles()
    c.compute.stop_database(standby)
    row = c.write(primary)  # it has some catching up to do
    log = Path(c.record(standby).log)
    logged_before = log.stat().st_size

    assert c.compute.rejoin_database(standby, primary) == REWOUND
    assert "no rewind required" in log.read_bytes()[logged_before:].decode(errors="replace")
    wait_for(lambda: c.has(standby, row), timeout=10, what="the standby to catch up", retry_on=())


def test_replace_process_waits_for_the_lock_and_never_drops_a_live_process(
    clab: ComputeLab,
) -> None:
    c = clab
    record = c.record("aws")
    held, release = threading.Event(), threading.Event()

    def other_command() -> None:  # e.g. `lab up` of a running lab, on its own open file
        with Lab(c.lab.paths.root)._locked():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=other_command)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(LabError, match="another `failover lab` command"):
            c.lab.replace_process(record, wait=0.1)
        threading.Timer(0.2, release.set).start()
        assert c.lab.replace_process(record, wait=10).process("postgres@aws") == record
    finally:
        release.set()
        thread.join()
    with pytest.raises(LabError, match=f"still runs as pid {record.pid}"):
        c.lab.replace_process(dataclasses.replace(record, pid=1, start_ticks=0))
    assert c.record("aws") == record
