"""The agent's children: the site's PostgreSQL and app, kept running as they should be.

Each child has a wanted state, kept in the journal so that it outlives the
agent. One thread looks every few tenths of a second: a child that should
run and does not is started again, after a pause that doubles with each
start that did not last (a server that cannot start is not hammered). Every
(re)start rewrites ``children.json`` beside the journal, so that the lab (or
an operator) can find every process by PID, and stop it, even when the agent
itself is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from failover import logs
from failover.processes import (
    ProcessRecord,
    is_alive,
    signal_tree,
    spawn,
    start_ticks,
    stop,
)
from failover.waiting import wait_for

log = logging.getLogger("failover.agent")

CHILDREN_FILE = "children.json"
FIRST_BACKOFF = 0.5  # seconds before the first restart of a child that died
MAX_BACKOFF = 10.0
LASTED = 10.0  # a child that ran this long resets the backoff
LOOK_EVERY = 0.2


@dataclass
class Child:
    """One supervised process: how to start it, whether it should run, its current record."""

    name: str  # postgres@aws, app@aws
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    user: str | None = None
    group: int | None = None
    stop_signal: int = signal.SIGTERM
    before_start: Callable[[], None] | None = None  # e.g. fence the files first
    wanted: bool = True
    record: ProcessRecord | None = None
    failures: int = 0
    not_before: float = 0.0  # monotonic time of the next allowed start
    started_at: float = 0.0
    restarts: int = 0
    last_exit: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)

    def running(self) -> bool:
        """Whether its current process runs."""
        return self.record is not None and is_alive(self.record)

    def state(self) -> dict[str, object]:
        """What ``status`` says of it."""
        running = self.running()
        return {"state": "running" if running else ("starting" if self.wanted else "stopped"),
                "pid": self.record.pid if running and self.record else None,
                "wanted": self.wanted, "restarts": self.restarts,
                "last_exit": self.last_exit or None}


class Supervisor:
    """Starts the children, restarts them with backoff, stops them on request or at exit."""

    def __init__(self, state_dir: Path, children: list[Child],
                 on_wanted: Callable[[str, bool], None]) -> None:
        self.state_dir = state_dir
        self.children = {c.name: c for c in children}
        self._on_wanted = on_wanted  # keeps the wanted state in the journal
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def child(self, kind: str) -> Child:
        """The child whose name starts with ``kind@`` (postgres, app)."""
        for name, child in self.children.items():
            if name.startswith(f"{kind}@"):
                return child
        raise KeyError(kind)

    def begin(self) -> None:
        """Start every wanted child now and look after them from a thread.

        A child that an earlier agent started and that still runs (that agent
        was killed; its children ran on) is adopted, not started a second time
        beside itself and lost from children.json.
        """
        left = {r.name: r for r in read_children(self.state_dir)}
        for child in self.children.values():
            record = left.get(child.name)
            if record is not None and is_alive(record):
                child.record, child.started_at = record, time.monotonic()
                logs.log_event(log, "agent.child.adopted", child=child.name, pid=record.pid)
            elif child.wanted:
                self._start(child)
        self._save()
        self._thread = threading.Thread(target=self._loop, name="agent-supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(LOOK_EVERY):
            for child in self.children.values():
                try:
                    self._look(child)
                except Exception as exc:  # one bad start must not end the supervision
                    logs.log_event(log, "agent.child.error", child=child.name,
                                   error=f"{type(exc).__name__}: {exc}")

    def _look(self, child: Child) -> None:
        with child.lock:
            if not child.wanted or child.running():
                return
            now = time.monotonic()
            if child.record is not None:  # it died: note it once, pause before the next start
                child.last_exit = f"pid {child.record.pid} exited"
                lasted = now - child.started_at
                child.failures = 0 if lasted >= LASTED else child.failures + 1
                child.not_before = now + min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** child.failures)
                logs.log_event(log, "agent.child.exited", child=child.name,
                               pid=child.record.pid, lasted=f"{lasted:.1f}",
                               restart_in=f"{child.not_before - now:.1f}")
                child.record = None
                self._save()
            if now >= child.not_before:
                self._start(child, restart=True)

    def _start(self, child: Child, *, restart: bool = False) -> ProcessRecord:
        with child.lock:
            if child.running():
                assert child.record is not None
                return child.record
            if child.before_start is not None:
                child.before_start()
            child.record = spawn(child.name, child.argv, log=child.log, env=child.env,
                                 user=child.user, group=child.group,
                                 stop_signal=child.stop_signal)
            child.started_at = time.monotonic()
            # Counted before children.json names the new process: whoever sees it
            # there (status, a test) sees the restart counted too.
            child.restarts += restart
            self._save()
            logs.log_event(log, "agent.child.started", child=child.name, pid=child.record.pid)
            return child.record

    def start(self, kind: str) -> ProcessRecord:
        """Want a child running and start it now if it is not; returns its record."""
        child = self.child(kind)
        with child.lock:
            self._want(child, True)
            child.failures, child.not_before = 0, 0.0
            return self._start(child)

    def stop(self, kind: str, *, kill: bool = False, timeout: float = 30.0) -> str:
        """Want a child stopped and stop it (its stop signal, or SIGKILL of its whole tree)."""
        child = self.child(kind)
        with child.lock:
            self._want(child, False)
            record = child.record
            if record is None or not is_alive(record):
                return "not running"
            if kill:
                count = signal_tree(record, signal.SIGKILL)
                wait_for(lambda: not is_alive(record), timeout=timeout,
                         what=f"{child.name} to die", retry_on=())
                outcome = f"killed ({count} processes)"
            else:
                outcome = stop(record, timeout=timeout)
            logs.log_event(log, "agent.child.stopped", child=child.name, pid=record.pid,
                           outcome=outcome)
            return outcome

    def _want(self, child: Child, wanted: bool) -> None:
        if child.wanted != wanted:
            child.wanted = wanted
            self._on_wanted(child.name.split("@", 1)[0], wanted)

    def shutdown(self) -> None:
        """Stop looking and stop every child, the app first (the agent is exiting)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for child in reversed(list(self.children.values())):
            with child.lock:
                if child.record is not None:
                    stop(child.record)

    def _save(self) -> None:
        """Write children.json: the agent's own PID and every child's record."""
        me = os.getpid()
        data = {"agent_pid": me, "agent_start_ticks": start_ticks(me),
                "children": [c.record.to_dict() for c in self.children.values()
                             if c.record is not None]}
        path = self.state_dir / CHILDREN_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)  # a reader sees the old file or the new one


def read_children(state_dir: Path) -> list[ProcessRecord]:
    """The children an agent recorded in its state dir (none when it wrote no file)."""
    try:
        data = json.loads((state_dir / CHILDREN_FILE).read_text())
    except FileNotFoundError:
        return []
    return [ProcessRecord.from_dict(r) for r in data.get("children", [])]
