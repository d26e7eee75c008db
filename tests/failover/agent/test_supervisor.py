"""The agent's supervisor over a harmless child (``sleep``): restart, stop, and adoption of
the children an agent that was killed left running."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.agent.supervisor import CHILDREN_FILE, Child, Supervisor, read_children
from failover.processes import ProcessRecord, is_alive, stop
from failover.waiting import wait_for

SLEEP = shutil.which("sleep") or "/bin/sleep"


class Started:
    """Every process the supervisors of a test started, stopped by PID at its end."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.records: list[ProcessRecord] = []
        self.wanted: list[tuple[str, bool]] = []

    def supervisor(self) -> Supervisor:
        """A supervisor of one child, ``app@aws`` (a sleep), as an agent that starts builds it."""
        child = Child("app@aws", [SLEEP, "300"], self.state_dir / "app.log")
        return Supervisor(self.state_dir, [child],
                          lambda kind, wanted: self.wanted.append((kind, wanted)))

    def seen(self) -> list[ProcessRecord]:
        """What children.json names now (and remember it, to stop it at the end)."""
        records = read_children(self.state_dir)
        self.records += records
        return records


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    kept = Started(tmp_path)
    try:
        yield kept
    finally:
        for record in kept.records:
            stop(record, timeout=5)


def halt(supervisor: Supervisor) -> None:
    """Stop a supervisor's thread but not its children: what SIGKILL of its agent does."""
    supervisor._stopping.set()
    if supervisor._thread is not None:
        supervisor._thread.join(timeout=5)


def test_a_child_that_dies_is_started_again_and_recorded(started: Started) -> None:
    supervisor = started.supervisor()
    supervisor.begin()
    try:
        (first,) = started.seen()
        data = json.loads((started.state_dir / CHILDREN_FILE).read_text())
        assert data["agent_pid"] == os.getpid() and first.name == "app@aws"
        os.kill(first.pid, signal.SIGKILL)
        second = wait_for(lambda: [r for r in started.seen() if r.pid != first.pid],
                          timeout=10, what="the child to be started again", retry_on=())[0]
        assert is_alive(second) and not is_alive(first)
        assert supervisor.child("app").state()["restarts"] == 1
    finally:
        halt(supervisor)


def test_a_killed_child_stays_down_when_stopped_on_purpose(started: Started) -> None:
    supervisor = started.supervisor()
    supervisor.begin()
    try:
        (record,) = started.seen()
        assert supervisor.stop("app", kill=True).startswith("killed")
        assert started.wanted == [("app", False)]
        assert supervisor.child("app").state()["state"] == "stopped"
        assert not is_alive(record)
        assert supervisor.stop("app") == "not running"
        again = supervisor.start("app")
        assert is_alive(again) and started.wanted[-1] == ("app", True)
        started.seen()
    finally:
        halt(supervisor)


def test_a_restarted_agent_adopts_the_children_its_predecessor_left_running(
    started: Started,
) -> None:
    first = started.supervisor()
    first.begin()
    halt(first)  # the agent was killed: its child runs on
    (orphan,) = started.seen()

    second = started.supervisor()  # the agent started again, on the same state dir
    second.begin()
    try:
        assert started.seen() == [orphan]  # adopted, not started twice and lost track of
        assert second.child("app").record == orphan
        assert second.stop("app") == "stopped"  # and it can stop it
        assert not is_alive(orphan)
    finally:
        halt(second)
