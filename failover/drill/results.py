"""A drill's report as typed values; ``DrillReport.to_dict()`` is what report.json holds.

Times in a report are seconds since the fault (t=0), so ``rto_seconds``,
``detection_seconds`` and ``dns_switch_seconds`` are also *when* those things
happened on the timeline. A figure that is None was not measured or does not
apply (writes never came back, the engine ran nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from failover.drill.workload import WorkloadSpec


@dataclass(frozen=True)
class Promise:
    """What the deployment promises (its ``objectives``): the limits a drill is judged on."""

    rto_seconds: float
    rpo_writes: int


@dataclass(frozen=True)
class Verdict:
    """One objective judged: its limit, what the drill measured, whether it was met."""

    objective: str  # e.g. rto_seconds; the suffix names the unit
    limit: float | int | str
    measured: float | int | str | None  # None: never happened (writes never came back)
    met: bool


@dataclass(frozen=True)
class StepTiming:
    """One step of the engine's run, its times in seconds since the fault."""

    index: int
    action: str
    title: str
    started: float | None  # None: never started
    ended: float | None  # None: never ended
    seconds: float | None
    outcome: str  # ok, failed, ..., or "running" / "not run"
    error: str | None = None


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened during the drill, and who saw it."""

    at: float  # seconds since the fault
    source: str  # drill, engine, controller, workload, dns, failback
    event: str


@dataclass(frozen=True)
class Series:
    """Requests per time bin: ok writes, ok reads and errors by cause."""

    bin_seconds: float
    start: float  # the first bin's left edge, in seconds since the fault
    ok_writes: tuple[int, ...]
    ok_reads: tuple[int, ...]
    errors: Mapping[str, tuple[int, ...]]  # cause -> count per bin


@dataclass(frozen=True)
class RunSummary:
    """The engine's run that made the move, as the journal tells it."""

    id: str
    kind: str  # switchover, promote
    outcome: str
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # the plan's (e.g. that the old primary cannot be fenced)


@dataclass(frozen=True)
class Failback:
    """How putting the lab back went: the old site rebuilt, the primary moved back."""

    done: bool
    seconds: float
    detail: str
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class DrillReport:
    """One drill: what was done, what the users saw, what was lost, and the verdicts."""

    scenario: str
    summary: str  # the scenario's, in a sentence
    started: str  # ISO 8601, to the second
    fault_at: str  # ISO 8601, to the millisecond
    deployment: str  # its configuration file
    from_site: str
    to_site: str
    objectives: Promise
    verdicts: tuple[Verdict, ...]
    rto_seconds: float | None  # fault -> first write acknowledged at the new primary
    write_unavailable_seconds: float  # the unluckiest user's total
    longest_write_outage_seconds: float
    detection_seconds: float | None  # the controller's first decision to act
    dns_switch_seconds: float | None  # the servers first answer the new site
    acked_writes: int
    lost_writes: int
    lost_write_ids: tuple[str, ...]  # posts first, then media
    acked_posts: int
    lost_posts: int
    acked_media: int
    lost_media: int
    split_brain_writes: int  # acknowledged by the old primary after the new one was promoted
    split_brain_write_ids: tuple[str, ...]
    requests: int
    errors_by_cause: Mapping[str, int]
    workload: WorkloadSpec
    run: RunSummary | None
    steps: tuple[StepTiming, ...]
    timeline: tuple[TimelineEvent, ...]
    series: Series | None
    notes: tuple[str, ...]
    failback: Failback | None = None  # None until the drill has failed back

    @property
    def objectives_met(self) -> bool:
        """Whether every objective was met; nothing judged is not a pass."""
        return bool(self.verdicts) and all(v.met for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, ``objectives_met`` right after the verdicts."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = jsonable(value)
            if key == "verdicts":
                out["objectives_met"] = self.objectives_met
        return out


def jsonable(value: Any) -> Any:
    """``value`` (``asdict`` of a result) with every tuple a list: it equals its JSON read back."""
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
