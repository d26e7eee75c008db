"""The drill's figures, from what the clients saw (and the journal, for the steps).

Every figure here is computed from the workload's log, whose times are the
clients' own clocks, from the DNS answers the drill watched and from the
journal's step times; nothing trusts the engine's view of its own success.
Split-brain writes are the workload's acknowledgements by the old primary
(the site the app said answered) after the journal's promote step ended.
What was lost is not computed here: it is asked of the new primary's
database (``losses.find_losses``). ``report`` puts it all together and
judges the scenario's objectives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from failover.drill.events import Event, WorkloadLog
from failover.drill.leadership import ClusterFacts
from failover.drill.losses import Losses
from failover.drill.objectives import REPLICATION_GRACE, Measured, judge
from failover.drill.probes import DnsChange
from failover.drill.results import (
    DrillReport,
    Promise,
    RunSummary,
    Series,
    StepTiming,
    TimelineEvent,
)
from failover.drill.scenarios import Scenario
from failover.drill.workload import WorkloadSpec
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
) -> Series:
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
    return Series(bin_seconds, first, tuple(ok_writes), tuple(ok_reads),
                  {cause: tuple(counts) for cause, counts in errors.items()})


def steps(run: RunRecord | None, fault_at: float) -> tuple[StepTiming, ...]:
    """The run's steps with start and end in seconds since the fault."""
    if run is None:
        return ()
    titles = {i: s.title for i, s in enumerate(run.plan.steps)}
    return tuple(
        StepTiming(
            index=step.index, action=step.action, title=titles.get(step.index, ""),
            started=seconds_after(step.started, fault_at),
            ended=seconds_after(step.ended, fault_at),
            seconds=None if step.seconds is None else round(step.seconds, 3),
            outcome=step.outcome or ("running" if step.started else "not run"),
            error=step.error,
        )
        for step in run.steps()
    )


def first_answer(changes: Sequence[DnsChange], address: str, after: float) -> float | None:
    """When the servers first answered ``address`` at or after ``after``."""
    current: DnsChange | None = None
    for change in changes:
        if change.at <= after:
            current = change
            continue
        if address in change.addresses:
            return change.at
    if current is not None and address in current.addresses:
        return after  # it already answered so when ``after`` came
    return None


def dns_switched(changes: Sequence[DnsChange], events: Sequence[Event], address: str,
                 after: float) -> float | None:
    """When the servers first answered ``address`` after ``after``, as anyone saw it.

    The watcher looks every 0.1 s from a thread that shares the drill's GIL with
    the workload, so under load a client can be first to be told the new site:
    a request that went there was given its address no later than it began.
    """
    told = [e.at - e.seconds for e in events if e.address == address and e.at - e.seconds >= after]
    watched = first_answer(changes, address, after)
    return min([*told, *([] if watched is None else [watched])], default=None)


def promoted_at(run: RunRecord | None) -> float | None:
    """When the run's promote step began (time.time()), if it ended well; None when it never did.

    Its start, not its end: the new primary may take writes from inside the
    step, so an old primary's acknowledgement after the start is already one
    too many.
    """
    if run is None:
        return None
    return next((step.started for step in run.steps()
                 if step.action == "promote" and step.outcome == "ok"), None)


def split_brain_writes(events: Sequence[Event], old_site: str, promoted: float | None,
                       old_address: str | None = None) -> list[Event]:
    """The writes the old primary acknowledged after the new one was promoted, in time order.

    Which site answered is what the app said (its site header). An answer that
    did not say is taken to be the old primary's when it came from
    ``old_address``; without that address it is not counted.
    """
    if promoted is None:  # no second primary, no split brain
        return []

    def old(event: Event) -> bool:
        if event.site is not None:
            return event.site == old_site
        return old_address is not None and event.address == old_address

    return sorted((e for e in events if e.ok and e.is_write and e.at > promoted and old(e)),
                  key=lambda e: e.at)


def seconds_after(at: float | None, fault_at: float) -> float | None:
    """``at`` in seconds since the fault, rounded to milliseconds; None stays None."""
    return None if at is None else round(at - fault_at, 3)


@dataclass(frozen=True)
class Observed:
    """Everything a drill saw, gathered once the workload has stopped (times: time.time())."""

    scenario: Scenario
    deployment: str  # its configuration file
    from_site: str
    to_site: str
    to_address: str  # the new primary's, as DNS should come to answer
    started: datetime
    fault_at: float
    ended: float
    detected_at: float | None  # the controller's first decision to act
    run: RunRecord | None
    log: WorkloadLog
    dns_changes: tuple[DnsChange, ...]
    notes: tuple[tuple[float, str, str], ...]  # the drill's own timeline: (at, source, text)
    refusals: tuple[str, ...]  # each distinct refusal of the engine before it acted
    losses: Losses
    promise: Promise
    workload: WorkloadSpec
    notice_seconds: float
    from_address: str | None = None  # the old primary's, for answers that name no site
    archive_age: float | None = None  # a rebuild's: the newest archived WAL's age at the fault
    cluster: ClusterFacts | None = None  # what the drill saw of the controllers' cluster


def archive_note(archive_age: float | None, ages: tuple[float, ...]) -> str:
    """What a rebuild lost against what its backups lacked at the fault."""
    said = ("the newest archived WAL was of unknown age at the fault" if archive_age is None
            else f"the newest archived WAL was {archive_age:.1f}s old at the fault")
    if not ages:
        return f"{said}; no acknowledged write was lost"
    return (f"{said}; the {len(ages)} writes lost were acknowledged between "
            f"{min(ages):.1f}s and {max(ages):.1f}s before it")


def rebuild_phases(run: RunRecord) -> str:
    """A rebuild's time per phase: provision, restore, WAL replay, objects, app, DNS."""
    took: dict[str, float] = {}
    for step in run.steps():
        seconds = step.seconds or 0.0
        if step.action == "restore_database":
            split = step.result.get("seconds") or {}
            took["restore"] = float(split.get("restore", seconds))
            took["WAL replay"] = float(split.get("recovery", 0.0))
            continue
        phase = {"provision": "provision", "sync_objects": "objects", "start_app": "app",
                 "wait_writable": "app", "switch_dns": "DNS"}.get(step.action)
        if phase is not None:
            took[phase] = took.get(phase, 0.0) + seconds
    return "rebuild phases: " + ", ".join(f"{name} {s:.1f}s" for name, s in took.items())


def report(seen: Observed) -> DrillReport:
    """The drill's report: its figures, timeline and verdicts (not yet failed back)."""
    events = seen.log.snapshot()
    fault, run = seen.fault_at, seen.run
    rto = seconds_after(seen.log.first_ack_at(seen.to_address, fault), fault)
    unavailable, longest = write_unavailability(events, fault, seen.ended)
    detected = seen.detected_at or (run.created if run else None)
    losses = seen.losses
    acked_posts, acked_media = len(seen.log.acked_posts()), len(seen.log.acked_media())
    lost = len(losses.posts) + len(losses.media)
    split = split_brain_writes(events, seen.from_site, promoted_at(run), seen.from_address)
    acked_at = {e.id: e.at for e in seen.log.writes() if e.ok and e.id}
    settled = [m for m in losses.objects if acked_at.get(m, fault) <= fault - REPLICATION_GRACE]
    ages = tuple(round(fault - acked_at.get(w, fault), 3) for w in losses.posts + losses.media)
    verdicts = judge(seen.scenario.objectives(), Measured(
        fault, seen.ended, rto, lost, len(split), run, seen.promise, seen.notice_seconds,
        settled_media_lost=len(settled), lost_write_ages=ages,
        archive_age=seen.archive_age, longest_write_outage=longest, cluster=seen.cluster))
    timings = steps(run, fault)
    notes = list(losses.notes) + (seen.cluster.summary() if seen.cluster else [])
    if run is not None and run.plan.kind == "rebuild":
        notes.append(rebuild_phases(run))
        notes.append(archive_note(seen.archive_age, ages))
    if seen.refusals:
        notes.append(f"the engine refused {len(seen.refusals)} time(s) before acting: "
                     f"{seen.refusals[0]}")
    return DrillReport(
        scenario=seen.scenario.name,
        summary=seen.scenario.summary,
        started=seen.started.isoformat(timespec="seconds"),
        fault_at=datetime.fromtimestamp(fault, UTC).isoformat(timespec="milliseconds"),
        deployment=seen.deployment,
        from_site=seen.from_site, to_site=seen.to_site,
        objectives=seen.promise,
        verdicts=verdicts,
        rto_seconds=rto,
        write_unavailable_seconds=round(unavailable, 3),
        longest_write_outage_seconds=round(longest, 3),
        detection_seconds=seconds_after(detected, fault),
        dns_switch_seconds=seconds_after(
            dns_switched(seen.dns_changes, events, seen.to_address, fault), fault),
        acked_writes=acked_posts + acked_media, lost_writes=lost,
        lost_write_ids=losses.posts + losses.media,
        acked_posts=acked_posts, lost_posts=len(losses.posts),
        acked_media=acked_media, lost_media=len(losses.media),
        split_brain_writes=len(split), split_brain_write_ids=tuple(e.id for e in split if e.id),
        requests=len(events),
        errors_by_cause=seen.log.failures_by_cause(),
        workload=seen.workload,
        run=None if run is None else RunSummary(
            run.id, run.plan.kind, run.outcome, tuple(run.warnings()), tuple(run.plan.notes)),
        steps=timings,
        timeline=timeline(seen, timings, split),
        series=series(events, fault, min((e.at for e in events), default=fault), seen.ended),
        notes=tuple(notes),
    )


def timeline(seen: Observed, timings: Sequence[StepTiming],
             split: Sequence[Event] = ()) -> tuple[TimelineEvent, ...]:
    """The drill's notes, each change of the DNS answers and each step's start, in time order.

    With split-brain writes, the first of them too, with how many there were.
    """
    fault = seen.fault_at
    events = [TimelineEvent(round(at - fault, 3), source, text)
              for at, source, text in seen.notes]
    events += [TimelineEvent(round(c.at - fault, 3), "dns", "authoritative answer: "
                             f"{', '.join(c.addresses) or c.detail}")
               for c in seen.dns_changes]
    events += [TimelineEvent(s.started, "engine", f"step {s.action}")
               for s in timings if s.started is not None]
    if split:
        events.append(TimelineEvent(round(split[0].at - fault, 3), "workload", (
            f"first of {len(split)} write(s) acknowledged by {seen.from_site} after "
            f"{seen.to_site} was promoted (split brain)")))
    return tuple(sorted(events, key=lambda e: e.at))
