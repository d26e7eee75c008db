"""What a drill expects: each objective judges the measured drill and gives a verdict.

Every scenario is judged on the deployment's RTO, on its RPO (zero lost
writes when there was notice) and on the engine's run ending well; a scenario
may expect more of its own (``Scenario.expects``), such as a termination
notice's move finishing before the deadline, or no split-brain writes (none
acknowledged by the old primary after the new one was promoted). An objective that does not
apply to a drill (no run to time) gives no verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from failover.drill.results import Promise, Verdict
from failover.engine.journal import RunRecord


@dataclass(frozen=True)
class Measured:
    """What the objectives are judged on, once the workload has stopped."""

    fault_at: float  # time.time() of the fault (or the notice)
    ended: float  # time.time() the workload stopped
    rto_seconds: float | None  # None: no write was acknowledged at the new primary
    lost_writes: int
    split_brain_writes: int  # acknowledged by the old primary after the new one was promoted
    run: RunRecord | None  # the engine's run that made the move, if any
    promise: Promise
    notice_seconds: float  # from the notice to the deadline, for scenarios that give one
    # Media acknowledged more than REPLICATION_GRACE before the fault and lost: objects are
    # copied continuously, so only the last moments' may be at the lost site alone.
    settled_media_lost: int = 0
    # For each lost write, how long before the fault it was acknowledged (negative: after).
    lost_write_ages: tuple[float, ...] = ()
    archive_age: float | None = None  # a rebuild's: the newest archived WAL's age at the fault


Objective = Callable[[Measured], Verdict | None]


def rto_met(m: Measured) -> Verdict:
    """Writes came back at the new primary within the promised RTO."""
    limit = m.promise.rto_seconds
    return Verdict("rto_seconds", limit, m.rto_seconds,
                   m.rto_seconds is not None and m.rto_seconds <= limit)


def rpo_met(m: Measured) -> Verdict:
    """No more acknowledged writes were lost than the promised RPO."""
    return Verdict("rpo_writes", m.promise.rpo_writes, m.lost_writes,
                   m.lost_writes <= m.promise.rpo_writes)


def nothing_lost(m: Measured) -> Verdict:
    """With notice, no acknowledged write may be lost, whatever the RPO allows."""
    return Verdict("rpo_writes", 0, m.lost_writes, m.lost_writes <= 0)


def no_split_brain_writes(m: Measured) -> Verdict:
    """No write was acknowledged by the old primary once the new one had been promoted.

    Such a write went into a branch of history that the new primary will never
    have: it is lost however the old primary is later rejoined.
    """
    return Verdict("split_brain_writes", 0, m.split_brain_writes, m.split_brain_writes == 0)


REPLICATION_GRACE = 2.0  # seconds: an object older than this at the fault is at the standby


def settled_media_kept(m: Measured) -> Verdict:
    """No media object acknowledged more than REPLICATION_GRACE before the fault was lost."""
    return Verdict("media_lost_2s_before_fault", 0, m.settled_media_lost,
                   m.settled_media_lost == 0)


REBUILD_RTO_SECONDS = 300.0  # a site made from nothing: minutes, not the week it once took
# A WAL segment is switched at most archive_timeout (the lab's 5 s) after a write and then
# pushed: a write acknowledged before the newest archived segment was pushed, less this
# margin for its push, is in the archive. Without a measured age: the lab's bound.
PUSH_MARGIN_SECONDS = 2.0
ARCHIVE_BOUND_SECONDS = 5.0 + PUSH_MARGIN_SECONDS


def rebuild_rto_met(m: Measured) -> Verdict:
    """Writes came back at the rebuilt site within REBUILD_RTO_SECONDS."""
    return Verdict("rto_seconds", REBUILD_RTO_SECONDS, m.rto_seconds,
                   m.rto_seconds is not None and m.rto_seconds <= REBUILD_RTO_SECONDS)


def archived_writes_kept(m: Measured) -> Verdict:
    """No write older than the archive's age at the fault (and a push's margin) was lost.

    A rebuild from backups loses what the archive had not taken when the
    providers went, never older writes.
    """
    bound = ARCHIVE_BOUND_SECONDS if m.archive_age is None else \
        m.archive_age + PUSH_MARGIN_SECONDS
    older = sum(1 for age in m.lost_write_ages if age > bound)
    return Verdict("writes_lost_before_the_archive", 0, older, older == 0)


def archive_fresh(m: Measured) -> Verdict:
    """The archive was at most ARCHIVE_BOUND_SECONDS behind at the fault (it kept up)."""
    return Verdict("archive_age_seconds", ARCHIVE_BOUND_SECONDS, m.archive_age,
                   m.archive_age is not None and m.archive_age <= ARCHIVE_BOUND_SECONDS)


def run_ok(m: Measured) -> Verdict:
    """The engine's move ended well."""
    outcome = m.run.outcome if m.run else "no run"
    return Verdict("run", "ok", outcome, outcome == "ok")


def move_finished_before_deadline(m: Measured) -> Verdict | None:
    """The move ended before the notice's deadline (a move still going counts until the end)."""
    if m.run is None:
        return None
    finished = m.run.ended or m.ended
    return Verdict("move_finished_seconds", m.notice_seconds, round(finished - m.fault_at, 3),
                   finished <= m.fault_at + m.notice_seconds)


def judge(objectives: tuple[Objective, ...], measured: Measured) -> tuple[Verdict, ...]:
    """The verdicts of ``objectives`` that apply, in their order."""
    return tuple(v for objective in objectives if (v := objective(measured)) is not None)
