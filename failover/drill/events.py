"""What the workload saw: one ``Event`` per request, gathered in a ``WorkloadLog``.

Times are the clients' own (``time.time()`` when the outcome was known). Each
event says where the request went (the address DNS gave) and, when the app
answered, which site answered (the reference app names itself in a header),
so that a write acknowledged by a site that was no longer the primary can be
told apart from one acknowledged by the new primary at the same address.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

WRITE_KINDS = frozenset({"post", "media"})
READ_KINDS = frozenset({"timeline", "read"})
CAUSES = ("dns", "connect", "timeout", "read-only", "5xx", "4xx", "bad-answer")


@dataclass(frozen=True)
class Event:
    """One request of the workload and what came of it."""

    at: float  # time.time() when the outcome was known
    kind: str  # "post" | "media" (writes) | "timeline" | "read" (reads)
    ok: bool
    cause: str | None  # failures only: one of CAUSES
    address: str | None  # the address DNS gave (None when DNS failed)
    seconds: float  # latency, from asking the resolver to the outcome
    id: str | None = None  # id of an acknowledged post or media
    detail: str = ""  # failures: first 200 chars of the error / body
    user: int = 0  # which user (0 .. users - 1) made the request
    site: str | None = None  # the site that answered, as the app said (None: no answer)

    @property
    def is_write(self) -> bool:
        """Whether the request was a write (post or media)."""
        return self.kind in WRITE_KINDS


def _at(event: Event) -> float:
    return event.at


def acked_write(event: Event) -> bool:
    """Whether the event is a write the app acknowledged."""
    return event.ok and event.is_write


class WorkloadLog:
    """Every request the workload made, in the order logged; safe to append from many threads."""

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = list(events)

    def append(self, event: Event) -> None:
        """Add one event."""
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[Event]:
        """A copy of the events so far (for a progress line while running)."""
        with self._lock:
            return list(self.events)

    def writes(self) -> list[Event]:
        """The write events (post, media), in time order."""
        return sorted((e for e in self.snapshot() if e.is_write), key=_at)

    def acked_posts(self) -> list[Event]:
        """The acknowledged posts, in time order."""
        return [e for e in self.writes() if e.ok and e.kind == "post"]

    def acked_media(self) -> list[Event]:
        """The acknowledged media uploads, in time order."""
        return [e for e in self.writes() if e.ok and e.kind == "media"]

    def failures_by_cause(self) -> dict[str, int]:
        """How many requests, reads and writes alike, failed for each cause."""
        counts = Counter(e.cause or "unknown" for e in self.snapshot() if not e.ok)
        return dict(sorted(counts.items()))

    def unavailable_windows(self, until: float | None = None) -> list[tuple[float, float]]:
        """Each stretch in which writes failed, as (start, end); reads are ignored.

        A stretch runs from the last acknowledged write before the failures (the
        workload could not tell it apart from an outage that began right after it)
        to the next acknowledged write. Failures before the first ack start at the
        first failure; failures never followed by an ack end at ``until`` (default:
        the last failure), so an outage that never ended still counts.
        """
        writes = self.writes()
        windows: list[tuple[float, float]] = []
        start: float | None = None  # start of the current failing stretch
        last_ack: float | None = None
        for event in writes:
            if event.ok:
                if start is not None:
                    windows.append((start, event.at))
                    start = None
                last_ack = event.at
            elif start is None:
                start = last_ack if last_ack is not None else event.at
        if start is not None:
            windows.append((start, until if until is not None else writes[-1].at))
        return windows

    def longest_unavailable(self) -> float:
        """The longest window, in seconds (0 when every write went through)."""
        return max((end - start for start, end in self.unavailable_windows()), default=0.0)

    def first_ack_at(self, address: str, after: float) -> float | None:
        """When the first write sent to ``address`` at or after ``after`` was acknowledged."""
        return next(
            (e.at for e in self.writes() if e.ok and e.address == address and e.at >= after), None
        )
