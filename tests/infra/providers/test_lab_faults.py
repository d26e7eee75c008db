"""The compute adapter's faults on stand-in processes: no lab servers, real signals.

A site's parts here are small Python processes (one forks a child, as a
postmaster forks backends) recorded in a ``lab.json`` of the test's own, so
the adapter finds and signals them exactly as it does a lab's servers.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from failover.exceptions import ProviderError
from failover.processes import (
    ProcessRecord,
    descendants,
    is_alive,
    signal_tree,
    spawn,
    state_of,
    stop,
)
from failover.waiting import wait_for
from infra.lab.exceptions import LabNotRunning
from infra.lab.lab import LabState
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.providers.lab import LabCompute

FORKS_A_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)
SLEEPS = "import time; time.sleep(120)"


@dataclass(frozen=True)
class StandIn:
    """A recorded site of stand-in processes and the adapter over it."""

    compute: LabCompute
    records: dict[str, ProcessRecord]

    def tree(self, name: str) -> list[int]:
        record = self.records[name]
        return [record.pid, *descendants(record.pid)]


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    """postgres@aws (with a child), app@aws and app@hetzner, stopped by PID at the end."""
    paths = LabPaths(tmp_path)
    paths.root.mkdir(exist_ok=True)
    records: dict[str, ProcessRecord] = {}
    try:
        for name, code in (("postgres@aws", FORKS_A_CHILD), ("app@aws", SLEEPS),
                           ("app@hetzner", SLEEPS)):
            log = tmp_path / f"{name}.log"
            records[name] = spawn(name, [sys.executable, "-c", code], log=log)
        pg_log = Path(records["postgres@aws"].log)
        wait_for(lambda: pg_log.read_text().strip(), timeout=10, what="the child's pid",
                 retry_on=())
        state = LabState(LabLayout(), datetime.now(UTC).isoformat(), list(records.values()),
                         complete=True)
        paths.state_file.write_text(json.dumps(state.to_dict()))
        yield StandIn(LabCompute(tmp_path), records)
    finally:
        for record in records.values():
            signal_tree(record, signal.SIGKILL)  # by PID, whatever a test left frozen
            stop(record)


def stopped(pids: list[int]) -> None:
    wait_for(lambda: all(state_of(p) == "T" for p in pids), timeout=10, retry_on=(),
             what="the processes to stop")


def running(pids: list[int]) -> None:
    wait_for(lambda: all(state_of(p) != "T" for p in pids), timeout=10, retry_on=(),
             what="the processes to continue")


def test_freeze_and_thaw_a_site_signal_every_part_and_what_it_forked(stand_in: StandIn) -> None:
    c = stand_in
    tree = [*c.tree("postgres@aws"), *c.tree("app@aws")]
    assert len(tree) == 3

    said = c.compute.freeze_site("aws")

    assert said == "froze postgres@aws, app@aws (3 processes)"
    stopped(tree)  # a signal is delivered when the kernel next schedules the process
    assert state_of(c.records["app@hetzner"].pid) != "T"  # another site: untouched
    assert c.compute.thaw_site("aws") == "thawed postgres@aws, app@aws (3 processes)"
    running(tree)


def test_freeze_and_thaw_one_part(stand_in: StandIn) -> None:
    c = stand_in
    assert c.compute.freeze_process("app@aws") == "froze app@aws (1 processes)"
    stopped([c.records["app@aws"].pid])
    assert state_of(c.records["postgres@aws"].pid) != "T"
    assert c.compute.thaw_process("app@aws") == "thawed app@aws (1 processes)"
    running([c.records["app@aws"].pid])


def test_a_crash_kills_the_database_tree_only(stand_in: StandIn) -> None:
    c = stand_in
    record = c.records["postgres@aws"]
    tree = c.tree("postgres@aws")

    said = c.compute.crash_database("aws")

    assert said == f"killed postgres@aws (pid {record.pid}, 2 processes)"
    assert not is_alive(record)
    assert not c.compute.database_running("aws")
    assert is_alive(c.records["app@aws"])
    wait_for(lambda: all(state_of(p) in (None, "Z") for p in tree), timeout=10,
             what="the server's child to go", retry_on=())


def test_killing_a_site_kills_every_part_of_it(stand_in: StandIn) -> None:
    c = stand_in
    assert c.compute.kill_site("aws") == "killed postgres@aws, app@aws (3 processes)"
    assert not any(is_alive(c.records[n]) for n in ("postgres@aws", "app@aws"))
    assert is_alive(c.records["app@hetzner"])


def test_what_the_lab_lacks_is_named(stand_in: StandIn) -> None:
    c = stand_in
    with pytest.raises(ProviderError, match="no processes at site 'spare'") as caught:
        c.compute.freeze_site("spare")
    assert caught.value.code == "unknown-site"
    with pytest.raises(ProviderError, match="no part named 'bind9'") as caught:
        c.compute.freeze_process("bind9")
    assert caught.value.code == "unknown-part"
    with pytest.raises(ProviderError, match=r"no database .* \(sites with one: aws\)"):
        c.compute.crash_database("hetzner")
    with pytest.raises(ProviderError, match="no provider API") as caught:
        c.compute.revoke_api_credentials("aws")
    assert caught.value.code == "unknown-site"


def test_without_a_lab_every_call_says_so(tmp_path: Path) -> None:
    compute = LabCompute(tmp_path)
    with pytest.raises(LabNotRunning, match="start one: failover lab up"):
        compute.freeze_site("aws")
    with pytest.raises(LabNotRunning):
        compute.database_running("aws")
