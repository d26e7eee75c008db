"""What a drill expects: each objective judges the measured drill and gives a verdict.

Every scenario is judged on the deployment's RTO, on its RPO (zero lost
writes when there was notice) and on the engine's run ending well; a scenario
may expect more of its own (``Scenario.expects``), such as a termination
notice's move finishing before the deadline, or no split-brain writes (none
acknowledged by the old primary after the new one was promoted). An objective that does not
apply to a drill (no run to time, no cluster of controllers) gives no verdict.

With controllers in a cluster (``leadership.ClusterFacts``) a drill is also
judged on the lead: the move ran once, a move cut short by its leader's site
going dark was resumed once by a new leader within the lease's time, the
deposed leader changed nothing when it woke; and a fault that should change
nothing (an etcd member lost) made no move, kept the leader and the writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from failover.drill.leadership import ClusterFacts
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
    longest_write_outage: float = 0.0  # the unluckiest user's longest stretch after the fault
    cluster: ClusterFacts | None = None  # None: the controller ran alone


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


# -- the controllers' cluster -------------------------------------------------------

# A write failing for longer than this is not the usual blip: it is under the
# controller's detection (three failed looks a second apart in the lab), so a
# healthy site's users never wait as long.
USUAL_OUTAGE_SECONDS = 2.0


def _exactly(objective: str, count: int, expected: int) -> Verdict:
    return Verdict(objective, expected, count, count == expected)


def move_ran_once(m: Measured) -> Verdict | None:
    """One run of the move began after the fault, whoever led: no second leader ran it again."""
    return None if m.cluster is None else _exactly("move_runs", m.cluster.move_runs, 1)


def resumed_once_by_new_leader(m: Measured) -> Verdict | None:
    """The move's run was resumed exactly once, after its leader went dark, and a new
    leader (a newer token) took the lead and wrote to the journal (the journal keeps each
    token's first write)."""
    c = m.cluster
    if c is None:
        return None
    new, before = c.takeover(), c.before
    wrote = dict(c.writers)  # token -> its first write to the journal
    met = (c.resumes == 1 and new is not None and before is not None
           and (new.token or 0) > (before.token or 0) and new.token in wrote
           and c.starts[1] >= (c.frozen_at or c.fault_at))
    return Verdict("resumed_by_new_leader", f"once, by a leader after {before or 'unknown'}",
                   f"{c.resumes} time(s); took the lead: {new or 'no one'}; the journal "
                   f"written by tokens {', '.join(map(str, wrote)) or 'none'}", met)


# When the site that went dark held etcd's raft leadership, the others first elect a
# new one (etcd's election timeout, 1 s by default, randomised up to twice that, and a
# heartbeat), and a new raft leader gives every lease its whole TTL again: the leader
# key outlives the dark leader by that much more (the lab shortens etcd's election
# timeout to 600 ms: infra/lab/etcd.py).
RAFT_ELECTION_SECONDS = 3.0


def resumed_within_ttl(m: Measured) -> Verdict | None:
    """The move was resumed within the lease's TTL, a loop and an etcd election of its
    leader going dark.

    Its key outlives the leader's last renewal (at most a loop before it went
    dark) by the TTL, restarted if etcd had to elect a new raft leader
    (RAFT_ELECTION_SECONDS); a follower takes it at its next look and resumes.
    """
    c = m.cluster
    if c is None:
        return None
    limit = c.ttl + c.loop_wait + RAFT_ELECTION_SECONDS
    took = None if c.frozen_at is None or len(c.starts) < 2 else round(
        c.starts[1] - c.frozen_at, 3)
    return Verdict("resumed_after_freeze_seconds", limit, took,
                   took is not None and took <= limit)


def deposed_leader_changed_nothing(m: Measured) -> Verdict | None:
    """The old leader, woken after the new one finished, wrote nothing and moved nothing."""
    if m.cluster is None:
        return None
    deposed = m.cluster.deposed
    writes = None if deposed is None else deposed.writes
    return Verdict("deposed_leader_writes", 0, writes, writes == 0)


def no_move_made(m: Measured) -> Verdict | None:
    """No run of any kind began after the fault."""
    return None if m.cluster is None else _exactly("runs_since_fault", m.cluster.runs, 0)


def no_decision_to_act(m: Measured) -> Verdict | None:
    """No controller decided to act (start, prepare, propose or resume a move)."""
    return None if m.cluster is None else _exactly("acting_decisions",
                                                   m.cluster.acting_decisions, 0)


def leader_kept(m: Measured) -> Verdict | None:
    """The controller that led at the fault leads at the end, with the same token, and the
    lead never changed between."""
    c = m.cluster
    if c is None:
        return None
    before, after = c.before, c.after
    changed = [x for x in c.changes if x.at > c.fault_at]
    return Verdict("leader", str(before or "unknown"), str(after or "unknown"),
                   before is not None and before.site is not None and not changed)


def writes_kept_flowing(m: Measured) -> Verdict:
    """No user's writes failed for longer than USUAL_OUTAGE_SECONDS in a row after the fault."""
    return Verdict("longest_write_outage_seconds", USUAL_OUTAGE_SECONDS,
                   round(m.longest_write_outage, 3),
                   m.longest_write_outage <= USUAL_OUTAGE_SECONDS)


def judge(objectives: tuple[Objective, ...], measured: Measured) -> tuple[Verdict, ...]:
    """The verdicts of ``objectives`` that apply, in their order."""
    return tuple(v for objective in objectives if (v := objective(measured)) is not None)
