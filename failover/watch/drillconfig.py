"""``watch.drills`` and ``watch.freeze_windows``: the drills the controller runs on a schedule.

A drill entry names a scenario, a cron schedule (five fields or ``@daily``
and the like, in UTC), the drill's options (as ``failover drill`` takes
them) and the limits past which it is aborted::

    watch:
      drills:
        - scenario: termination-notice
          schedule: "0 10 * * 2"        # Tuesdays at 10:00 UTC
          options: {notice: 30, rate: 20, users: 4, settle: 5}
          abort: {error_rate: 0.05, write_unavailable_seconds: 30}
      freeze_windows:
        - cron: "0 0 24 12 *"           # from Christmas Eve, 00:00 UTC ...
          duration_minutes: 4320        # ... for three days: no drill starts
        - cron: "0 8 * * 1-5"           # office hours on weekdays: none either
          duration_minutes: 600

A freeze window starts at each time its cron names and lasts
``duration_minutes``; no drill *starts* inside one (a drill under way when a
window opens runs to its end, since stopping it halfway is the riskier
choice). Only scenarios the running controller detects and acts on itself
can be scheduled: not those that cut the controller off (root), rebuild a
spare from backups, or are played by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from croniter import croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from failover.drill.workload import WorkloadSpec  # imports no config: no cycle


def _cron(value: str) -> str:
    """A cron expression croniter takes: five fields (minute to weekday) or an @alias."""
    fields = value.split()
    if not (value.startswith("@") or len(fields) == 5) or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a cron schedule (five fields, minute hour "
                         "day-of-month month day-of-week, e.g. '0 10 * * 2', or @daily)")
    return value


Cron = Annotated[str, AfterValidator(_cron)]


def last_fire(cron: str, now: datetime) -> datetime:
    """The latest time at or before ``now`` that ``cron`` names."""
    if croniter.match(cron, now):
        return now.replace(second=0, microsecond=0)
    fired: datetime = croniter(cron, now).get_prev(datetime)
    return fired


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrillRunOptions(_Strict):
    """How a scheduled drill runs: ``failover drill``'s options (it always fails back)."""

    notice: float = Field(60.0, ge=5, description="termination-notice: seconds from the "
                          "notice to the cut")
    rate: float = Field(WorkloadSpec.rate, ge=1, description="requests per second, all users")
    users: int = Field(WorkloadSpec.users, ge=1, le=64, description="synthetic users")
    write_share: float = Field(WorkloadSpec.write_share, ge=0, le=1)
    media_share: float = Field(WorkloadSpec.media_share, ge=0, le=1)
    warmup: float = Field(5.0, gt=0, description="seconds of load before the fault")
    settle: float = Field(5.0, ge=1, description="seconds of load after recovery")


class DrillAbortConfig(_Strict):
    """The users' limits past which a scheduled drill is aborted and failed back."""

    error_rate: float | None = Field(None, ge=0, le=1, description="share of failed requests "
                                     "over window_seconds (0: the first error)")
    write_unavailable_seconds: float | None = Field(
        None, ge=0, description="the unluckiest user's total time unable to write")
    window_seconds: float = Field(10.0, gt=0, le=600)


class DrillSchedule(_Strict):
    """One drill the controller runs on a schedule."""

    scenario: str
    schedule: Cron
    options: DrillRunOptions = DrillRunOptions()
    abort: DrillAbortConfig = DrillAbortConfig()

    @field_validator("scenario")
    @classmethod
    def _schedulable(cls, value: str) -> str:
        from failover.drill.scenarios import SCENARIOS  # the drill's, read when validated

        able = [s.name for s in SCENARIOS.values()
                if s.watched and not s.cuts and not s.rebuilds]
        if value not in able:
            why = "is not a scenario" if value not in SCENARIOS else \
                "cannot be scheduled (the controller does not act on it alone)"
            raise ValueError(f"{value!r} {why} (scheduled drills: {', '.join(able)})")
        return value


def _one_each(drills: list[DrillSchedule]) -> list[DrillSchedule]:
    seen: set[str] = set()
    for drill in drills:
        if drill.scenario in seen:  # its last run, read from the history, is the scenario's
            raise ValueError(f"{drill.scenario} is scheduled twice: give it one schedule "
                             "(cron lists and ranges combine times)")
        seen.add(drill.scenario)
    return drills


ScheduledDrills = Annotated[list[DrillSchedule], AfterValidator(_one_each)]


class FreezeWindow(_Strict):
    """A time no drill starts: from each time ``cron`` names, for ``duration_minutes``."""

    cron: Cron
    duration_minutes: float = Field(gt=0, le=366 * 24 * 60)

    def holds(self, now: datetime) -> datetime | None:
        """When the window ``now`` is inside ends, or None when ``now`` is outside it."""
        ends = last_fire(self.cron, now) + timedelta(minutes=self.duration_minutes)
        return ends if now < ends else None
