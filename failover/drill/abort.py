"""A drill's guard rail on its own users: abort when what they suffer passes a limit.

A drill is a real failover, and the users of a scheduled one may be real
too. ``AbortWatch`` looks at the drill's workload every half second; when
the share of failed requests over the last ``window_seconds``, or the
unluckiest user's total time without a write, passes its limit, the drill
is aborted: it stops at its next wait (a move under way is let finish, since
one cut short is worse than one finished), skips what its fault had still to
do (a notice's cut-off at the deadline), is measured, and fails back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from failover.drill.events import Event, WorkloadLog
from failover.drill.measure import write_unavailability
from failover.exceptions import FailoverError

LOOK_EVERY = 0.5  # seconds between looks at the workload


class DrillAborted(FailoverError):
    """A guard rail stopped the drill; it is measured and failed back all the same."""


@dataclass(frozen=True)
class AbortLimits:
    """When a drill gives up; None: that limit is off."""

    error_rate: float | None = None  # share of failed requests over the window: 0..1
    write_unavailable_seconds: float | None = None  # the unluckiest user's total
    window_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.error_rate is not None and not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"abort error rate must be between 0 and 1, not {self.error_rate!r}")
        if self.write_unavailable_seconds is not None and not (
                math.isfinite(self.write_unavailable_seconds)
                and self.write_unavailable_seconds >= 0):
            raise ValueError("abort write unavailability must be a number of seconds, not "
                             f"{self.write_unavailable_seconds!r}")
        if not (math.isfinite(self.window_seconds) and self.window_seconds > 0):
            raise ValueError(f"abort window must be positive, not {self.window_seconds!r}")

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.error_rate is not None or self.write_unavailable_seconds is not None


def breach(events: Sequence[Event], limits: AbortLimits, now: float) -> str | None:
    """Why the drill must stop now, or None: the first limit its users' experience passes."""
    if limits.error_rate is not None:
        recent = [e for e in events if now - limits.window_seconds < e.at <= now]
        failed = sum(1 for e in recent if not e.ok)
        if recent and failed / len(recent) > limits.error_rate:
            causes = WorkloadLog([e for e in recent if not e.ok]).failures_by_cause()
            return (f"error rate {failed / len(recent):.1%} over the last "
                    f"{limits.window_seconds:g}s ({failed} of {len(recent)} requests: "
                    + ", ".join(f"{c} {n}" for c, n in causes.items())
                    + f") passed the limit of {limits.error_rate:.1%}")
    if limits.write_unavailable_seconds is not None and events:
        worst, _longest = write_unavailability(events, float("-inf"), now)
        if worst > limits.write_unavailable_seconds:
            return (f"a user has been unable to write for {worst:.1f}s, past the limit of "
                    f"{limits.write_unavailable_seconds:g}s")
    return None


class AbortWatch:
    """Watches a workload's log from a thread; ``wait`` and ``check`` raise once it has fired."""

    def __init__(self, limits: AbortLimits | None, on_abort: Callable[[str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.on_abort = on_abort
        self.clock = clock
        self.reason: str | None = None
        self._fired = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, log: WorkloadLog) -> None:
        """Begin watching ``log`` (nothing to watch without limits)."""
        if self.limits is None or not self.limits.active:
            return
        self._thread = threading.Thread(target=self._watch, args=(log, self.limits),
                                        name="drill-abort", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the workload has stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def fire(self, reason: str) -> None:
        """Abort the drill (the first reason is the one kept)."""
        if self.reason is None:
            self.reason = reason
            self.on_abort(reason)
        self._fired.set()

    def check(self) -> None:
        """Raise DrillAborted if the drill was aborted."""
        if self._fired.is_set():
            raise DrillAborted(f"aborted: {self.reason}")

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass, or raise DrillAborted as soon as the drill is aborted."""
        if seconds > 0:
            self._fired.wait(seconds)
        self.check()

    def _watch(self, log: WorkloadLog, limits: AbortLimits) -> None:
        while not self._stop.wait(LOOK_EVERY) and not self._fired.is_set():
            reason = breach(log.snapshot(), limits, self.clock())
            if reason is not None:
                self.fire(reason)
