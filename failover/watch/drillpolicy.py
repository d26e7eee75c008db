"""The scheduled drills' guard rails: whether a drill may start now, and why not.

Plain functions over an explicit ``DrillState`` (the controller's snapshot,
the schedule, what the history says), the clock inside it, like
``policy.run_cycle``: ``decide`` touches nothing and says what it decided
in a sentence. A drill starts only when

1. it is due: its schedule named a time since its last scheduled run (or,
   never run, since the controller began watching); a time missed while the
   rails held it back is made up once, not once per missed time;
2. no drill is under way, here or in another process (one at a time);
3. no freeze window holds;
4. all is well: every site answers in its role from every vantage point, no
   run is under way or unfinished, no notice or move is pending, and the
   controller acts on its own (``auto`` mode: a drill's move must not wait
   for a person).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from failover.watch.drillconfig import DrillSchedule, FreezeWindow, last_fire
from failover.watch.policy import Snapshot

RETRY_PAUSE = 60.0  # seconds before a drill that could not start is tried again


@dataclass(frozen=True)
class DrillState:
    """What the guard rails look at, taken at one moment."""

    now: float
    snapshot: Snapshot
    drills: tuple[DrillSchedule, ...]
    freeze_windows: tuple[FreezeWindow, ...] = ()
    watching_since: float = 0.0  # when the controller began: a drill never run counts from it
    last_runs: Mapping[str, float] = field(default_factory=dict)  # scenario -> last start
    under_way: tuple[str, ...] = ()  # drills under way, described (here or elsewhere)
    refused: Mapping[str, float] = field(default_factory=dict)  # scenario -> last failed start


@dataclass(frozen=True)
class DrillDecision:
    """Start a drill, or not; the sentence says why."""

    action: Literal["none", "start"]
    sentence: str
    drill: DrillSchedule | None = None
    due_since: float | None = None  # the scheduled time it was due for


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def due(drill: DrillSchedule, state: DrillState) -> float | None:
    """The scheduled time ``drill`` is due for, or None when it is not due."""
    fired = last_fire(drill.schedule, _utc(state.now)).timestamp()
    since = state.last_runs.get(drill.scenario, state.watching_since)
    if fired <= since:
        return None
    refused = state.refused.get(drill.scenario)
    if refused is not None and refused >= fired and state.now - refused < RETRY_PAUSE:
        return None  # it could not start a moment ago: not again at every tick
    return fired


def frozen(windows: Sequence[FreezeWindow], now: float) -> str | None:
    """Why no drill may start now (a freeze window holds), or None."""
    for window in windows:
        ends = window.holds(_utc(now))
        if ends is not None:
            return f"freeze window {window.cron!r} holds until {_when(ends)}"
    return None


def unwell(snapshot: Snapshot) -> str | None:
    """Why the deployment is not fit for a drill now, or None when all is well."""
    if snapshot.run is not None:
        return f"run {snapshot.run.id or '(elsewhere)'} ({snapshot.run.kind}) is " \
               f"{snapshot.run.outcome}"
    if snapshot.settings.mode != "auto":
        return "the controller is in approve mode: a drill's move would wait for a person"
    if snapshot.notices:
        first = snapshot.notices[0]
        return f"a notice is pending ({first.provider}, {first.source})"
    active = [m for m in snapshot.moves if m.active]
    if active:
        return f"move {active[0].id} ({active[0].kind} to {active[0].to_site}) is " \
               f"{active[0].state}"
    primary = snapshot.primary
    if primary is None:
        return "no site is known as the primary"
    for site in snapshot.sites:
        role = "primary" if site == primary else "standby"
        db = snapshot.latest("database", site)
        if db is None or not db.ok or db.facts.get("role") != role:
            said = "not yet probed" if db is None else (
                db.facts.get("role", "?") if db.ok else f"unreachable: {db.detail}")
            return f"{site}'s database is not a healthy {role} ({said})"
        for vantage in snapshot.settings.vantages:
            looks = snapshot.looks("http", site, vantage)
            if not looks or not looks[-1].ok:
                said = looks[-1].detail if looks else "not yet probed"
                return f"{site}'s app does not answer at {vantage} ({said})"
    return None


def decide(state: DrillState) -> DrillDecision:
    """Whether a scheduled drill starts now: the first due one, if the rails allow."""
    due_now = [(at, d) for d in state.drills if (at := due(d, state)) is not None]
    if not due_now:
        return DrillDecision("none", "no drill is due")
    at, drill = min(due_now, key=lambda pair: pair[0])
    what = f"drill {drill.scenario} due since {_when(_utc(at))}"
    if state.under_way:
        return DrillDecision("none", f"{what} waits: one at a time, and "
                             f"{state.under_way[0]} is under way", drill, at)
    why = frozen(state.freeze_windows, state.now) or unwell(state.snapshot)
    if why is not None:
        return DrillDecision("none", f"{what} waits: {why}", drill, at)
    return DrillDecision("start", f"{what}: all is well; starting it", drill, at)
