"""The site agents of a lab of this module's own: rejoin, a killed agent, a crashed server,
and the lease that fences a primary, also one that comes back from a frozen host.

One lab for the module, on subnet 127.71 (it promotes by hand, kills and
freezes parts). Every test leaves it as it found it: aws the primary,
hetzner its streaming standby, leases off, nothing fenced. A split brain is
made by promoting the standby with ``pg_promote()`` while the old primary
still takes writes; the old primary's agent must make it a standby again.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from failover.agent.client import AgentClient, AgentCompute
from failover.agent.rejoin import ALREADY, REBUILT, REWOUND
from failover.agent.supervisor import read_children
from failover.exceptions import ProviderError
from failover.processes import ProcessRecord, is_alive, signal_tree, stop
from failover.waiting import wait_for
from infra.lab import agents
from infra.lab.postgres import APP_DATABASE, APP_USER
from infra.providers.lab_faults import LabFaults
from tests.conftest import RunningLab, own_lab

pytestmark = pytest.mark.lab

SUBNET = "127.71"
SITES = ("aws", "hetzner")
PROBE = "agent_probe"

# The lease as a controller renews it through the agent (no watch.cluster.agent_leases):
# what a deployment without etcd runs; test_clusterlease_in_lab.py has the etcd one.
lab = own_lab(SUBNET, "failover-test-agent-", agent_leases=False)


@pytest.fixture(scope="module")
def alab(lab: RunningLab) -> RunningLab:
    """The lab, with a table the app's user may write to."""
    rows(lab, "aws", f"CREATE TABLE {PROBE} (token text PRIMARY KEY)")
    rows(lab, "aws", f"GRANT SELECT, INSERT ON {PROBE} TO {APP_USER}")
    return lab


# -- the lab's databases and agents --------------------------------------------------


def rows(c: RunningLab, site: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with c.endpoint(site, dbname=APP_DATABASE).connect(timeout=3) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def roles(c: RunningLab) -> tuple[str, str]:
    """(primary, standby) as the servers say."""
    standby = {s: rows(c, s, "SELECT pg_is_in_recovery()")[0][0] for s in SITES}
    primaries = [s for s in SITES if not standby[s]]
    assert len(primaries) == 1, standby
    return primaries[0], next(s for s in SITES if s != primaries[0])


def write(c: RunningLab, site: str) -> str:
    token = f"{site}-{uuid.uuid4().hex[:8]}"
    rows(c, site, f"INSERT INTO {PROBE} VALUES (%s)", token)
    return token


def has(c: RunningLab, site: str, token: str) -> bool:
    return bool(rows(c, site, f"SELECT 1 FROM {PROBE} WHERE token = %s", token))


def streams_to(c: RunningLab, primary: str) -> dict[str, str]:
    return dict(rows(c, primary, "SELECT application_name, state FROM pg_stat_replication"))


@contextmanager
def agent_of(c: RunningLab, site: str) -> Iterator[AgentClient]:
    client = agents.client(c.layout, c.lab.paths, site)
    try:
        yield client
    finally:
        client.close()


def rejoin(c: RunningLab, site: str, primary: str, hba: str | None = None) -> str:
    """Make ``site`` a standby of ``primary`` through its agent, as the engine does."""
    with agent_of(c, site) as client:
        return AgentCompute(client, c.endpoint).rejoin_database(site, primary, hba=hba)


def recorded(c: RunningLab, site: str) -> ProcessRecord | None:
    """The site's server as the lab records it (from its agent's children.json), if any."""
    state = c.lab.state()
    assert state is not None
    record = state.process(f"postgres@{site}")
    assert record is None or record.parent == f"agent@{site}"
    return record


def postgres_of(c: RunningLab, site: str) -> ProcessRecord:
    """The site's running server as the lab records it."""
    record = recorded(c, site)
    assert record is not None and is_alive(record)
    return record


def restarted(c: RunningLab, site: str, before: ProcessRecord) -> ProcessRecord:
    """Wait until the agent started the site's server again; its new record."""
    def new() -> ProcessRecord | None:
        record = recorded(c, site)  # none between the crash and the restart
        return record if record and record.pid != before.pid and is_alive(record) else None

    record = wait_for(new, timeout=30, what=f"postgres@{site} to be started again",
                      retry_on=())
    with agent_of(c, site) as agent:
        wait_for(lambda: agent.status()["role"] == "primary", timeout=30,
                 what=f"postgres@{site} to answer", retry_on=ProviderError)
    return record


def split_brain(c: RunningLab, old: str, new: str) -> tuple[str, str, str]:
    """Promote ``new`` while ``old`` still takes writes; returns (shared, new's, old's) rows."""
    shared = write(c, old)
    wait_for(lambda: has(c, new, shared), timeout=10, what=f"{new} to replay the shared row",
             retry_on=())
    assert rows(c, new, "SELECT pg_promote()") == [(True,)]
    return shared, write(c, new), write(c, old)  # old's row: the divergent timeline


def assert_follows(c: RunningLab, site: str, primary: str,
                   made: tuple[str, str, str]) -> None:
    shared, new_row, divergent = made
    assert roles(c) == (primary, site)
    assert streams_to(c, primary) == {site: "streaming"}
    wait_for(lambda: has(c, site, new_row), timeout=10, what=f"{site} to replay {primary}'s row",
             retry_on=())
    assert has(c, site, shared) and not has(c, site, divergent)
    later = write(c, primary)  # and it keeps following
    wait_for(lambda: has(c, site, later), timeout=10, what=f"{site} to replay a later row",
             retry_on=())


def swing_back(c: RunningLab) -> None:
    """aws the primary again (hetzner was promoted and aws follows it)."""
    made = split_brain(c, "hetzner", "aws")
    assert rejoin(c, "hetzner", "aws") == REWOUND
    assert_follows(c, "hetzner", "aws", made)


# -- the app and the fence --------------------------------------------------------------


def post_user(c: RunningLab, site: str, timeout: float = 5) -> httpx.Response:
    with c.client(site) as app:
        app.timeout = httpx.Timeout(timeout)
        return app.post("/v1/users", json={"handle": f"agent_{uuid.uuid4().hex[:12]}"})


def assert_refused_as_fenced(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "fenced"


def app_user_refused(c: RunningLab, site: str) -> bool:
    """Whether a new session of the app's user is refused (the fence's pg_hba.conf)."""
    try:
        with c.endpoint(site, user=APP_USER, dbname=APP_DATABASE).connect(timeout=2):
            return False
    except psycopg.OperationalError as exc:
        assert "pg_hba.conf" in str(exc) or "rejected" in str(exc), exc
        return True


def writes_again(c: RunningLab, site: str) -> None:
    """Wait until the site's app takes writes (its pool may hold a session that was ended)."""
    wait_for(lambda: post_user(c, site).status_code == 201, timeout=20,
             what=f"app@{site} to take writes", retry_on=httpx.TransportError)


@contextmanager
def lease_held(c: RunningLab, site: str) -> Iterator[tuple[AgentClient, dict[str, Any]]]:
    """The site's agent; on the way out its lease is renewed, first alone (which leaves a
    fence of its own in place), then asking for the fence to be lifted, as the controller
    does once it has seen no other primary; then released: leases off, as with no
    controller. The second renewal's answer is put in the dict yielded."""
    with agent_of(c, site) as agent:
        ended: dict[str, Any] = {}
        try:
            yield agent, ended
        finally:
            alone = agent.renew_lease(time.time() + 60)
            ended.update(agent.renew_lease(time.time() + 60, unfence=True))
            ended["alone"] = alone
            agent.release_lease()


# -- rejoin ----------------------------------------------------------------------------


def test_rejoin_through_the_agent_rewinds_a_diverged_old_primary_both_ways(
    alab: RunningLab,
) -> None:
    c = alab
    assert roles(c) == ("aws", "hetzner")
    for old, new in (("aws", "hetzner"), ("hetzner", "aws")):
        before = postgres_of(c, old)
        made = split_brain(c, old, new)
        assert [rows(c, s, "SELECT pg_is_in_recovery()") for s in SITES] == [[(False,)]] * 2
        t0 = time.monotonic()
        how = rejoin(c, old, new)
        print(f"rejoin {old} -> standby of {new}: {how} in {time.monotonic() - t0:.2f}s")
        assert how == REWOUND
        assert_follows(c, old, new, made)

        running = postgres_of(c, old)
        primary = f"{c.layout.address(new)}:{c.layout.postgres_port}"
        assert rejoin(c, old, new) == ALREADY.format(primary=primary)
        assert postgres_of(c, old) == running  # left alone: not stopped, not restarted

        # The agent's children.json, and so the lab's state, names the new server.
        assert running.pid != before.pid and is_alive(running) and not is_alive(before)
        named = {r.name: r for r in read_children(agents.agent_dir(c.lab.paths, old))}
        assert named[f"postgres@{old}"].pid == running.pid
        c.lab.running_state()
        with agent_of(c, old) as agent:
            status = agent.status()
        assert status["role"] == "standby" and status["fenced"] is False
        assert status["children"]["postgres"]["pid"] == running.pid
    assert roles(c) == ("aws", "hetzner")


def test_rejoin_rebuilds_a_standby_whose_data_dir_is_lost(alab: RunningLab) -> None:
    c = alab
    primary, standby = roles(c)
    with agent_of(c, standby) as agent:
        agent.stop_database()
    shutil.rmtree(c.lab.paths.pgdata(standby))  # the disk went with the machine
    t0 = time.monotonic()
    assert rejoin(c, standby, primary) == REBUILT
    print(f"rebuilt {standby} in {time.monotonic() - t0:.2f}s")
    token = write(c, primary)
    wait_for(lambda: has(c, standby, token), timeout=10, what="the rebuilt standby to replay",
             retry_on=())
    assert sorted(p.name for p in c.lab.paths.site(standby).iterdir()) == ["pgdata"]


def test_an_agent_killed_in_the_middle_of_a_rejoin_finishes_it_when_started_again(
    alab: RunningLab,
) -> None:
    c = alab
    made = split_brain(c, "aws", "hetzner")
    home = agents.agent_dir(c.lab.paths, "aws")
    left = read_children(home)  # what the killed agent leaves running
    old_agent = c.lab.running_state().process("agent@aws")
    assert old_agent is not None
    op = f"rejoin-killed-{uuid.uuid4().hex[:8]}"
    body = {"primary_host": c.layout.address("hetzner"), "primary_port": c.layout.postgres_port,
            "timeout": 120, "wait": 0}
    with agent_of(c, "aws") as agent:
        assert agent.request("POST", "/v1/rejoin", body, op=op)[0] == 202

        def progress() -> str:
            record = agent.request("GET", f"/v1/operations/{op}")[1]
            assert record["state"] == "running", record  # it must not end before the kill
            return str(record["progress"])

        killed_at = wait_for(progress, timeout=30, what="the rejoin to begin", retry_on=(),
                             interval=0.01)
    os.kill(old_agent.pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(old_agent), timeout=10, what="agent@aws to die", retry_on=())
    try:
        record = agents.start(c.layout, c.lab.paths, "aws")
        try:
            c.lab.replace_process(record)
        except BaseException:
            stop(record)
            raise
        with agent_of(c, "aws") as agent:
            def ended() -> dict[str, Any] | None:
                answer = agent.request("GET", f"/v1/operations/{op}", timeout=2)[1]
                return None if answer["state"] == "running" else dict(answer)

            final = wait_for(ended, timeout=150, what="the resumed rejoin to end",
                             retry_on=ProviderError)
        print(f"agent killed at {killed_at!r}; the rejoin then: {final['state']} "
              f"{final['result'] or final['error']}")
        if final["state"] == "failed":  # reported: said clearly, and a new one then works
            assert final["error"] and "Traceback" not in final["error"]
            rejoin(c, "aws", "hetzner")
        else:
            primary = f"{c.layout.address('hetzner')}:{c.layout.postgres_port}"
            assert final["result"]["how"] in (REWOUND, REBUILT, ALREADY.format(primary=primary))
        assert_follows(c, "aws", "hetzner", made)
        # Nothing the killed agent left running was lost track of.
        now = read_children(home)
        assert [r.name for r in left if is_alive(r) and r not in now] == []
        c.lab.running_state()
    finally:
        now = read_children(home)
        for orphan in left:  # started by this lab, recorded nowhere any more: stop by PID
            if orphan not in now and is_alive(orphan):
                stop(orphan)
    swing_back(c)


# -- a crashed server ----------------------------------------------------------------


def test_a_crashed_postgres_comes_back_unfenced_while_its_lease_holds(
    alab: RunningLab,
) -> None:
    c = alab
    with lease_held(c, "aws") as (agent, _):
        agent.renew_lease(time.time() + 60)
        before = postgres_of(c, "aws")
        signal_tree(before, signal.SIGKILL)  # the server and every backend: a crash
        after = restarted(c, "aws", before)
        status = agent.status()
        assert status["fenced"] is False and status["lease"]["state"] == "held"
        assert status["children"]["postgres"]["pid"] == after.pid
        assert not app_user_refused(c, "aws")
        writes_again(c, "aws")


def test_a_crashed_postgres_comes_back_fenced_once_its_lease_lapsed(alab: RunningLab) -> None:
    c = alab
    with lease_held(c, "aws") as (agent, unfenced):
        expires_at = time.time() + 1.5
        agent.renew_lease(expires_at)
        before = postgres_of(c, "aws")
        # Killed just before the lease ends: the agent starts it again only after a
        # pause (0.5 s at least), by when the lease has lapsed.
        wait_for(lambda: time.time() >= expires_at - 0.3, timeout=5,
                 what="the lease's last moments", retry_on=())
        signal_tree(before, signal.SIGKILL)
        restarted(c, "aws", before)
        status = agent.status()
        assert status["lease"]["state"] == "lapsed"
        assert status["fenced"] is True  # pg_hba.conf was fenced before the server started
        assert app_user_refused(c, "aws")
        assert_refused_as_fenced(post_user(c, "aws"))
    # A renewal alone does not lift the agent's own fence: only one that asks does.
    assert unfenced["alone"]["regained"] is False and unfenced["alone"]["self_fenced"] is True
    assert unfenced["regained"] is True
    assert not app_user_refused(c, "aws")
    writes_again(c, "aws")


# -- the lease -------------------------------------------------------------------------


def test_a_lapsed_lease_fences_the_primary_and_a_renewal_unfences_it(alab: RunningLab) -> None:
    c = alab
    with lease_held(c, "aws") as (agent, unfenced):
        agent.renew_lease(time.time() + 60)
        writes_again(c, "aws")
        renewed = agent.renew_lease(time.time() + 1.0)  # the controller stops renewing
        assert renewed["state"] == "held" and renewed["regained"] is False
        status = wait_for(lambda: (s := agent.status())["fenced"] and s, timeout=10,
                          what="the agent to fence its primary", retry_on=())
        assert status["lease"]["state"] == "lapsed" and status["role"] == "primary"
        wait_for(lambda: app_user_refused(c, "aws"), timeout=5, what="the fence to be loaded",
                 retry_on=())
        assert_refused_as_fenced(post_user(c, "aws"))
    assert unfenced["regained"] is True  # the renewal after the self-fence undid it
    with agent_of(c, "aws") as agent:
        status = agent.status()
    assert status["fenced"] is False and status["lease"]["state"] == "off"
    writes_again(c, "aws")


def test_a_primary_back_from_a_frozen_host_takes_no_writes(alab: RunningLab) -> None:
    c = alab
    faults = LabFaults(c.lab.paths.root)
    with lease_held(c, "aws") as (agent, unfenced):
        writes_again(c, "aws")
        # A session of the app's user opened before the freeze, idle across it.
        session = c.endpoint("aws", user=APP_USER, dbname=APP_DATABASE).connect(timeout=3)
        expires_at = time.time() + 2.0
        agent.renew_lease(expires_at)
        faults.freeze_site("aws")
        try:
            wait_for(lambda: time.time() > expires_at + 0.5, timeout=10,
                     what="the lease to end while aws is frozen", retry_on=())
        finally:
            thawed = time.monotonic()
            faults.thaw_site("aws")
        writer = AppWriter(c, "aws", until=thawed + 2.0)
        writer.start()
        try:
            session_writes = SessionWrites(session)
            fenced_after = wait_for(
                lambda: session_writes.refused() and app_user_refused(c, "aws")
                and time.monotonic() - thawed, timeout=1.0,
                what="aws's database to be fenced after the thaw", retry_on=())
        finally:
            writer.join()
            session.close()
        print(f"fenced {fenced_after:.3f}s after the thaw; writes through a session opened "
              f"before the freeze: {session_writes.taken} taken, the last "
              f"{session_writes.last_taken(thawed)}; app: {writer.summary()}")
        assert writer.acknowledged == []  # the app refused at once: its lease had lapsed
        assert writer.fenced > 0
        assert session_writes.after(thawed) <= fenced_after
    assert unfenced["regained"] is True
    writes_again(c, "aws")


class AppWriter(threading.Thread):
    """POSTs users at a site's app, one after another, until a time (monotonic)."""

    def __init__(self, c: RunningLab, site: str, until: float) -> None:
        super().__init__(name=f"writer@{site}", daemon=True)
        self.c, self.site, self.until = c, site, until
        self.acknowledged: list[float] = []
        self.fenced = 0
        self.other: list[str] = []

    def run(self) -> None:
        while time.monotonic() < self.until:
            try:
                answer = post_user(self.c, self.site, timeout=1)
            except httpx.HTTPError as exc:
                self.other.append(type(exc).__name__)
                continue
            if answer.status_code == 201:
                self.acknowledged.append(time.monotonic())
            elif answer.status_code == 503 and answer.json().get("code") == "fenced":
                self.fenced += 1
            else:
                self.other.append(str(answer.status_code))

    def summary(self) -> str:
        return (f"{len(self.acknowledged)} acknowledged, {self.fenced} refused as fenced, "
                f"other: {sorted(set(self.other)) or 'none'}")


class SessionWrites:
    """Writes through one open session: taken until the fence ends the session."""

    def __init__(self, session: psycopg.Connection[Any]) -> None:
        self.session = session
        self.taken = 0
        self.last: float | None = None

    def refused(self) -> bool:
        try:
            self.session.execute(f"INSERT INTO {PROBE} VALUES (%s)",
                                 (f"frozen-{uuid.uuid4().hex[:8]}",))
        except psycopg.Error:
            return True
        self.taken += 1
        self.last = time.monotonic()
        return False

    def after(self, since: float) -> float:
        """Seconds after ``since`` of the last write taken (0 when none was)."""
        return 0.0 if self.last is None else self.last - since

    def last_taken(self, since: float) -> str:
        return "none" if self.last is None else f"{self.after(since):.3f}s after the thaw"
