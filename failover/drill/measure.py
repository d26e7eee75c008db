"""The drill's figures, from what the clients saw (and the journal, for the steps).

Every figure here is computed from the workload's log, whose times are the
clients' own clocks, and from the journal's step times; nothing trusts the
engine's view of its own success. What was lost is not computed here: it is
asked of the new primary's database (``workload.missing_posts``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from failover.drill.workload import Event, WorkloadLog
from failover.engine.journal import RunRecord


def write_unavailability(
    events: Sequence[Event], after: float, until: float
) -> tuple[float, float]:
    """(worst user's total, longest single stretch) of write failure ending after ``after``.

    Measured per user: each synthetic user caches DNS on its own, as users
    behind different resolvers do, so the figure is what the unluckiest user
    lived through, not an average that a lucky user's success would hide.
    """
    by_user: dict[int, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user, []).append(event)
    total, longest = 0.0, 0.0
    for user_events in by_user.values():
        stretches = WorkloadLog(user_events).unavailable_windows(until)
        spans = [(s, e) for s, e in stretches if e > after]
        total = max(total, sum(e - s for s, e in spans))
        longest = max([longest, *(e - s for s, e in spans)])
    return total, longest


def series(
    events: Sequence[Event], fault_at: float, start: float, end: float, bin_seconds: float = 1.0
) -> dict[str, Any]:
    """Per-bin counts on a time axis in seconds since the fault (bins from ``start``)."""
    first = math.floor((start - fault_at) / bin_seconds) * bin_seconds
    count = max(1, math.ceil((end - fault_at - first) / bin_seconds))
    ok_writes, ok_reads = [0] * count, [0] * count
    errors: dict[str, list[int]] = {}
    for event in events:
        index = int((event.at - fault_at - first) // bin_seconds)
        if not 0 <= index < count:
            continue
        if event.ok:
            (ok_writes if event.is_write else ok_reads)[index] += 1
        else:
            errors.setdefault(event.cause or "unknown", [0] * count)[index] += 1
    return {"bin_seconds": bin_seconds, "start": first, "ok_writes": ok_writes,
            "ok_reads": ok_reads, "errors": errors}


def steps(run: RunRecord | None, fault_at: float) -> list[dict[str, Any]]:
    """The run's steps with start and end in seconds since the fault."""
    if run is None:
        return []
    titles = {i: s.title for i, s in enumerate(run.plan.steps)}
    out = []
    for step in run.steps():
        out.append({
            "index": step.index, "action": step.action, "title": titles.get(step.index, ""),
            "started": seconds_after(step.started, fault_at),
            "ended": seconds_after(step.ended, fault_at),
            "seconds": None if step.seconds is None else round(step.seconds, 3),
            "outcome": step.outcome or ("running" if step.started else "not run"),
            "error": step.error,
        })
    return out


def seconds_after(at: float | None, fault_at: float) -> float | None:
    """``at`` in seconds since the fault, rounded to milliseconds; None stays None."""
    return None if at is None else round(at - fault_at, 3)
