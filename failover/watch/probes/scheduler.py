"""Every probe on its own drift-free schedule, hundreds of them on one event loop and one core.

The clock and the sleep are injectable (as tenacity's are), so that tests run
the schedule on a virtual clock and never wait on the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from failover import logs
from failover.watch.probes.contract import Probe, one_line
from failover.watch.signals import Observation

log = logging.getLogger("failover.watch")

Clock = Callable[[], float]  # seconds, monotonic
Sleep = Callable[[float], Awaitable[None]]


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of the sorted samples lie (nearest rank)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass
class ProbeTrack:
    """How one probe keeps its schedule."""

    looks: int = 0
    skipped: int = 0  # slots passed over because the look before ran past them
    lateness_last: float = 0.0  # seconds the last look started after its due time
    lateness_max: float = 0.0


class ProbeScheduler:
    """Every probe on its own drift-free schedule, on one event loop.

    The k-th look of a probe is due at ``start + offset + k * interval``; the
    offsets spread the probes evenly over their interval so that hundreds do
    not fire in the same millisecond. A look that runs a little past its
    successor's due time (a timeout equal to the interval) is followed at
    once, so a dark target costs no extra interval before it is called down;
    one that runs past more than one interval does not make looks pile up:
    the slots it ran past are skipped (counted). How late each look starts,
    against its due time or the end of the look before if that came later,
    is recorded: lateness is what an overloaded loop shows first.

    ``clock`` and ``sleep`` must agree (the defaults: the monotonic clock that
    asyncio's own sleep keeps).
    """

    SAMPLES = 100_000  # lateness samples kept for the percentiles (the most recent)

    def __init__(self, probes: Sequence[Probe], sink: Callable[[Observation], None], *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.probes = tuple(probes)
        self._sink = sink
        self._clock = clock
        self._sleep = sleep
        self.tracks = [ProbeTrack() for _ in self.probes]
        self._lateness: deque[float] = deque(maxlen=self.SAMPLES)

    async def run(self, stop: asyncio.Event) -> None:
        """Look until ``stop`` is set; then cancel the looks under way and close the probes."""
        start = self._clock()
        count = len(self.probes)
        tasks = [
            asyncio.create_task(self._drive(i, start + probe.interval * i / count),
                                name=f"probe {probe.kind} {probe.target}@{probe.vantage}")
            for i, probe in enumerate(self.probes)
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            closed = await asyncio.gather(*(p.aclose() for p in self.probes),
                                          return_exceptions=True)
            for probe, result in zip(self.probes, closed, strict=True):
                if isinstance(result, Exception):
                    logs.log_event(log, "watch.probe_close", kind=probe.kind,
                                   target=probe.target, error=one_line(result))

    async def _drive(self, index: int, first: float) -> None:
        """One probe's looks, each at its slot; never two at once."""
        probe, track = self.probes[index], self.tracks[index]
        slot, ready = 0, first
        while True:
            due = first + slot * probe.interval
            if (delay := due - self._clock()) > 0:
                await self._sleep(delay)
            lateness = max(0.0, self._clock() - max(due, ready))
            track.looks += 1
            track.lateness_last = lateness
            track.lateness_max = max(track.lateness_max, lateness)
            self._lateness.append(lateness)
            try:
                observation = await probe.look()
            except Exception as exc:  # a probe broke its contract; its schedule goes on
                observation = Observation(probe.kind, probe.target, probe.vantage, time.time(),
                                          "down", 0.0, f"probe failed: {one_line(exc)}")
            try:
                self._sink(observation)
            except Exception as exc:
                logs.log_event(log, "watch.sink_error", kind=probe.kind, target=probe.target,
                               error=one_line(exc))
            ready = self._clock()
            following = slot + 1
            if ready - (first + following * probe.interval) >= probe.interval:
                # Past more than one slot: the next slot still ahead, the rest skipped.
                following = math.ceil((ready - first) / probe.interval)
                track.skipped += following - slot - 1
            slot = following

    def reset_stats(self) -> None:
        """Forget the looks counted so far (a benchmark's warm-up, a new window)."""
        for track in self.tracks:
            track.looks = track.skipped = 0
            track.lateness_last = track.lateness_max = 0.0
        self._lateness.clear()

    def stats(self) -> dict[str, Any]:
        """Looks, skipped slots and lateness (seconds) over every probe, JSON-ready."""
        ordered = sorted(self._lateness)
        return {
            "probes": len(self.probes),
            "looks": sum(t.looks for t in self.tracks),
            "skipped": sum(t.skipped for t in self.tracks),
            "lateness_p50": _percentile(ordered, 0.50),
            "lateness_p99": _percentile(ordered, 0.99),
            "lateness_max": max((t.lateness_max for t in self.tracks), default=0.0),
        }
