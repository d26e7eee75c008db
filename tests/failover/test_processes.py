"""Processes are known and stopped by PID and start time, never by name."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from failover.processes import (
    ProcessRecord,
    descendants,
    is_alive,
    signal_tree,
    spawn,
    state_of,
    stop,
    tree_memory,
)
from failover.waiting import wait_for

IGNORES_SIGTERM = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" \
    "print('ready', flush=True)\ntime.sleep(60)\n"


def test_spawn_and_stop(tmp_path: Path) -> None:
    record = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                   log=tmp_path / "sleeper.log")
    assert is_alive(record)
    assert all(m > 0 for m in tree_memory(record))
    assert stop(record) == "stopped"
    assert not is_alive(record)
    assert stop(record) == "not running"


def test_a_process_that_ignores_its_stop_signal_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    record = spawn("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], log=log)
    wait_for(lambda: "ready" in log.read_text(), timeout=10, what="the child to ignore SIGTERM",
             retry_on=())
    assert stop(record, timeout=0.5) == "killed"
    assert not is_alive(record)


STUBBORN_PARENT = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
    "print('ready', child.pid, flush=True)\ntime.sleep(60)\n"
)


def test_a_killed_process_takes_its_children_with_it(tmp_path: Path) -> None:
    # As PostgreSQL's archiver, blocked in its archive_command, outlives a killed postmaster.
    log = tmp_path / "parent.log"
    record = spawn("parent", [sys.executable, "-c", STUBBORN_PARENT], log=log)
    wait_for(lambda: "ready" in log.read_text(), timeout=10, what="the child to start",
             retry_on=())
    [child] = descendants(record.pid)
    assert stop(record, timeout=0.5) == "killed"
    wait_for(lambda: state_of(child) in (None, "Z"), timeout=5, what="the child to die",
             retry_on=())


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    record = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                   log=tmp_path / "s.log")
    try:
        impostor = ProcessRecord("sleeper", record.pid, record.start_ticks + 1, record.argv,
                                 record.log, signal.SIGTERM)
        assert not is_alive(impostor)
        assert stop(impostor) == "not running"
        assert is_alive(record)
    finally:
        stop(record)


PARENT_WITH_CHILD = (
    "import signal, subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), sys.exit(0)))\n"
    "print(child.pid, flush=True)\n"
    "child.wait()\n"
)


def test_a_frozen_tree_is_thawed_and_stopped_whole(tmp_path: Path) -> None:
    log = tmp_path / "parent.log"
    record = spawn("parent", [sys.executable, "-c", PARENT_WITH_CHILD], log=log)
    try:
        child = int(wait_for(lambda: log.read_text().strip(), timeout=10, what="the child's pid",
                             retry_on=()))
        assert descendants(record.pid) == [child]
        assert signal_tree(record, signal.SIGSTOP) == 2
        wait_for(lambda: state_of(record.pid) == "T", timeout=5,
                 what="the parent to be stopped", retry_on=())
        # Frozen, it could not act on SIGTERM; stop() continues it first, so it ends its child.
        assert stop(record, timeout=10) == "stopped"
    finally:
        signal_tree(record, signal.SIGKILL)  # by PID, whatever failed above; none if stopped
    assert not is_alive(record)
    # Gone, or a zombie of an init that has not reaped it yet (None: gone, even mid-read).
    wait_for(lambda: state_of(child) in (None, "Z"), timeout=10, what="the child to end",
             retry_on=())
