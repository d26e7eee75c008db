"""Processes the lab starts, remembered and stopped by their PID.

A PID alone can be reused by an unrelated process after ours exits, so each
record also keeps the process's start time (field 22 of /proc/PID/stat) and
a signal is only ever sent when both still match. Nothing is killed by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from failover.waiting import WaitTimeout, wait_for


@dataclass(frozen=True)
class ProcessRecord:
    """One process the lab started."""

    name: str  # e.g. "postgres@aws"
    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    log: str
    stop_signal: int = signal.SIGTERM
    parent: str | None = None  # the part that started it (an agent), when not the lab itself

    def child_of(self, parent: str) -> ProcessRecord:
        """This record, marked as started by ``parent``."""
        return replace(self, parent=parent)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        """A record saved by ``to_dict``."""
        return cls(**{**data, "argv": tuple(data["argv"])})


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot; None when it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def state_of(pid: int) -> str | None:
    """A process's state letter (R, S, T stopped, Z zombie...); None when it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def runs(pid: int, ticks: int) -> bool:
    """Whether process ``pid``, started at ``ticks``, still runs (a zombie does not).

    A process killed while its threads are still being torn down shows as a
    zombie that no wait can reap yet: its start time alone would call it alive.
    """
    fields = _stat_fields(pid)
    return fields is not None and int(fields[19]) == ticks and fields[0] not in ("Z", "X")


def _reap(pid: int) -> None:
    # Our own children stay zombies until waited for; reaping them is harmless
    # when they are not ours (ChildProcessError).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(record: ProcessRecord) -> bool:
    """Whether the recorded process (same PID, same start time) still runs."""
    _reap(record.pid)
    return runs(record.pid, record.start_ticks)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    group: int | None = None,
    cwd: Path | None = None,
    stop_signal: int = signal.SIGTERM,
) -> ProcessRecord:
    """Start a long-running process in its own session, output to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            user=user,
            # `group` alone changes only the gid: root keeps uid 0 (the drill's
            # controller, whose group a partition matches). subprocess changes
            # only the uid for `user`; then drop root's groups too.
            group=group,
            extra_groups=[] if user is not None else None,
            cwd=cwd,
            start_new_session=True,  # the terminal's Ctrl-C is not meant for servers
        )
    ticks = start_ticks(proc.pid)
    if ticks is None:  # it died at once; its log says why
        proc.wait()
        ticks = 0
    return ProcessRecord(name, proc.pid, ticks, tuple(argv), str(log), stop_signal)


def send(record: ProcessRecord, sig: int) -> bool:
    """Signal the recorded process if it is still the same process."""
    if not is_alive(record):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, sig)
        return True
    return False


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, nearest first (found through /proc, never by name)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo += children.get(child, [])
    return found


def _signal_pids(pids: list[int], sig: int) -> int:
    count = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
        count += 1
    return count


def signal_tree(record: ProcessRecord, sig: int) -> int:
    """Signal a recorded process and everything it forked; returns how many got it.

    A stopped postmaster alone would leave its backends answering on open
    connections and its WAL receiver streaming, so a site is only frozen
    when the whole tree is. The root is stopped first (it forks no more) and
    continued last; until then its exited children stay zombies, so their
    PIDs cannot be reused under us.
    """
    if sig == signal.SIGSTOP:
        if not send(record, sig):  # checks the start time: still our process
            return 0
        return 1 + _signal_pids(descendants(record.pid), sig)
    if not is_alive(record):
        return 0
    if sig == signal.SIGKILL:
        # Stopped first: a supervisor (an agent) killed a child at a time could
        # otherwise start a new one, which no one would then kill.
        send(record, signal.SIGSTOP)
    count = _signal_pids(list(reversed(descendants(record.pid))), sig)
    return count + int(send(record, sig))


def stop(record: ProcessRecord, timeout: float = 15.0) -> str:
    """Stop a process by PID: its stop signal, then SIGKILL. Returns how it ended.

    A frozen tree (a drill's SIGSTOP) is continued first, so that it can act on
    the stop signal and its children are not left behind, stopped for ever.
    """
    signal_tree(record, signal.SIGCONT)
    if not send(record, record.stop_signal):
        return "not running"
    try:
        wait_for(lambda: not is_alive(record), timeout=timeout, what=f"{record.name} to stop",
                 retry_on=())
        return "stopped"
    except WaitTimeout:
        # The whole tree: a child left behind (PostgreSQL's archiver, blocked on an
        # archive_command whose repository went dark) keeps what the next start needs
        # (the shared memory block) until it ends by itself.
        signal_tree(record, signal.SIGKILL)
        wait_for(lambda: not is_alive(record), timeout=5, what=f"{record.name} to die",
                 retry_on=())
        return "killed"


def log_tail(record: ProcessRecord, lines: int = 5) -> str:
    """The last lines a process wrote, to explain why it failed."""
    try:
        text = Path(record.log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def uptime(record: ProcessRecord) -> float:
    """Seconds since the process started."""
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    boot_seconds = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, boot_seconds - record.start_ticks / ticks_per_second)


def _memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; PSS needs smaps_rollup (our own or root)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def tree_memory(record: ProcessRecord) -> tuple[int, int]:
    """(RSS, PSS) of the process and all its descendants, in bytes; (0, 0) when gone.

    PostgreSQL's memory lives mostly in the backends and background workers
    that the postmaster forks, so the tree is what counts. RSS counts shared
    pages (shared_buffers) once per process that touched them; PSS divides
    them among those processes, so PSS adds up to what the machine really gives.
    """
    if not is_alive(record):
        return 0, 0
    rss = pss = 0
    for pid in [record.pid, *descendants(record.pid)]:
        one_rss, one_pss = _memory_of(pid)
        rss, pss = rss + one_rss, pss + one_pss
    return rss, pss
