"""The planner: turns "move to SITE" and what the servers say now into a Plan.

Safety checks live here, before anything is touched: a plan that would leave
two primaries, or send traffic to a site that fails its own readiness check,
is refused with the reason. An unfinished run is never planned around: the
same command resumes it, any other is refused until it is finished.
"""

from __future__ import annotations

from collections.abc import Callable

from failover.engine.checks import MAX_LAG_BYTES, emergency_problem, switchover_problem
from failover.engine.deployment import Deployment, Topology
from failover.engine.executor import unfinished_run
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan, PlanKind, Step
from failover.exceptions import UnsafePlan


class NothingToDo(UnsafePlan):
    """The deployment is already where the command would take it."""

    exit_code = 0


def resumable(deployment: Deployment, kind: PlanKind, site: str) -> RunRecord | None:
    """The unfinished run this command would resume; refuses when another one is unfinished.

    ``site`` is the command's site: the target of a switchover or promote, the
    site that rejoins for a rejoin.
    """
    run = unfinished_run(deployment)
    if run is None:
        return None
    ours = run.plan.from_site if kind == "rejoin" else run.plan.to_site
    if run.plan.kind == kind and ours == site:
        return run
    command = {
        "switchover": f"failover switchover --to {run.plan.to_site}",
        "promote": f"failover promote --site {run.plan.to_site}",
        "rejoin": f"failover rejoin --site {run.plan.from_site}",
        "prepare": f"failover watch (it prepares the move to {run.plan.to_site})",
        "rebuild": f"failover rebuild --site {run.plan.to_site}",
    }[run.plan.kind]
    raise UnsafePlan(
        f"run {run.id} ({run.plan.kind} {run.plan.from_site} -> {run.plan.to_site}) did not "
        f"finish ({run.outcome}); finish it first: {command} (or give it up: failover "
        f"abandon {run.id})"
    )


def plan_or_resume(
    deployment: Deployment, kind: PlanKind, site: str,
    make: Callable[[Deployment, Topology], Plan],
) -> tuple[Plan, RunRecord | None]:
    """The unfinished run's plan and record to resume, else a new plan and None.

    Raises NothingToDo when the deployment is already where the move leads,
    UnsafePlan when the move is refused or another run is unfinished.
    """
    resume = resumable(deployment, kind, site)
    if resume is not None:
        return resume.plan, resume
    return make(deployment, deployment.observe()), None


def _the_primary(topology: Topology) -> str:
    primaries = topology.primaries
    if len(primaries) > 1:
        raise UnsafePlan(
            f"{' and '.join(primaries)} both answer as primary: fence one by hand before "
            "anything moves (failover status shows both)"
        )
    if not primaries:
        unreachable = [s.name for s in topology.sites.values() if not s.reachable]
        hint = f" ({', '.join(unreachable)} unreachable)" if unreachable else ""
        raise UnsafePlan(
            f"no site answers as primary{hint}; if the primary is gone, promote a standby: "
            "failover promote --site SITE"
        )
    return primaries[0]


def plan_switchover(deployment: Deployment, target: str, topology: Topology) -> Plan:
    """The planned move to ``target``: zero acknowledged writes lost."""
    deployment.config.site(target)  # an unknown site is a ConfigError naming the sites
    source = _the_primary(topology)
    if source == target:
        raise NothingToDo(f"{target} is already the primary; nothing to do")
    problem = switchover_problem(deployment, topology, source, target)
    if problem:
        raise UnsafePlan(problem)
    low, normal = deployment.config.dns.low_ttl, deployment.normal_ttl
    can_rejoin = deployment.compute(source) is not None
    steps = [
        Step("check_switchover", f"{source} is the only primary, {target} streams from it "
             "and its app is ready", {"from": source, "to": target,
                                      "max_lag_bytes": MAX_LAG_BYTES},
             30, retry=True, changes=False),
        Step("lower_ttl", f"publish {source}'s records with TTL {low}s to every DNS provider",
             {"site": source, "ttl": low}, 30, retry=True),
        Step("sync_objects", f"copy objects {source} -> {target} (missing or changed only)",
             {"from": source, "to": target, "best_effort": False}, 600, retry=True),
        Step("synchronous_replication", f"commits at {source} wait for {target} to apply them",
             {"primary": source, "standby": target}, 30, retry=True),
        Step("wait_low_ttl", f"wait until answers cached with the old TTL ({normal}s) have "
             "expired", {}, normal + 30, retry=True, changes=False),
        Step("fence", f"fence {source}: refuse all but replication, end every session",
             {"site": source, "best_effort": False}, 30, retry=True),
        Step("catch_up", f"wait until {target} has replayed the fenced LSN",
             {"site": target}, 60, retry=True),
        Step("promote", f"promote {target}", {"site": target}, 60, retry=True),
        Step("wait_writable", f"wait until {target}'s app accepts writes", {"site": target},
             30, retry=True, changes=False),
        Step("switch_dns", f"point the records at {target} (TTL {low}s) at every DNS provider "
             "and verify", {"site": target, "ttl": low}, 60, retry=True),
        Step("restore_ttl", f"publish {target}'s records with their normal TTL ({normal}s)",
             {"site": target}, 30, retry=True),
        # After the move the target takes the writes: copy only what it lacks, and a
        # source that is gone by now is a warning, not a run that can never end.
        Step("sync_objects", f"copy objects {source} took in during the move (missing only)",
             {"from": source, "to": target, "best_effort": True, "only_missing": True}, 600,
             retry=True),
    ]
    notes = []
    if can_rejoin:
        steps.append(Step("rejoin", f"make {source} a streaming standby of {target} "
                          "(pg_rewind, or a fresh base backup)",
                          {"site": source, "primary": target}, 300))
    else:
        notes.append(f"{source} has no compute adapter: it stays fenced; make it a standby of "
                     f"{target} by hand")
    steps += [
        Step("check_result", f"{target} is the only primary and DNS answers it everywhere",
             {"primary": target, "standbys": [source] if can_rejoin else [], "ttl": normal},
             30, retry=True, changes=False),
    ]
    return Plan("switchover", source, target, tuple(steps), tuple(notes))


def plan_prepare(deployment: Deployment, target: str, topology: Topology) -> Plan:
    """What a notice starts at once, ahead of the planned move: the switchover's first steps.

    Lower the TTL, copy the objects, make replication synchronous: from then
    on no acknowledged write is missing at ``target``, so an emergency before
    the move loses nothing, and the move itself has little left to do.
    """
    move = plan_switchover(deployment, target, topology)
    first = ("check_switchover", "lower_ttl", "sync_objects", "synchronous_replication")
    steps = tuple(s for s in move.steps if s.action in first)[:len(first)]
    return Plan("prepare", move.from_site, target, steps)


def _was_synchronous(deployment: Deployment, target: str) -> bool:
    """Whether the last run left replication to ``target`` synchronous (a move under way).

    A switchover that got as far as synchronous replication but not as far as
    its promote, or a preparation that finished, leaves it so.
    """
    last = deployment.journal.last()
    if last is None or last.plan.to_site != target:
        return False
    steps = {s.action: s.outcome for s in last.steps()}
    if last.plan.kind == "prepare":
        return last.outcome == "ok"
    return (last.plan.kind == "switchover" and not last.finished
            and steps.get("synchronous_replication") == "ok" and steps.get("promote") != "ok")


def _old_primary(deployment: Deployment, topology: Topology, target: str) -> str:
    """The site an emergency promote of ``target`` takes over from: the one to fence.

    With two sites it is the other one. With more, it is the one other site that
    does not answer as a standby (it is gone, or a fenced primary): the standbys
    answer, so they cannot be the primary that was lost.
    """
    others = [s for s in deployment.config.sites if s != target]
    if len(others) == 1:
        return others[0]
    suspects = [s for s in others
                if s not in topology.sites or topology.sites[s].role != "standby"]
    if len(suspects) == 1:
        return suspects[0]
    if suspects:
        raise UnsafePlan(
            f"{' and '.join(suspects)} do not answer as standbys: cannot tell which of them was "
            f"the primary {target} would take over from, to fence it; plan again once all but "
            "one of them answer (failover status shows them)"
        )
    raise UnsafePlan(
        f"{' and '.join(others)} answer as standbys and no site as the primary: there is no "
        f"old primary for {target} to take over from (failover status shows them)"
    )


def plan_promote(
    deployment: Deployment, target: str, topology: Topology, *, accept_data_loss: bool
) -> Plan:
    """The emergency move to ``target`` when the primary is gone."""
    deployment.config.site(target)
    view = topology.sites[target]
    if view.role == "primary" and topology.primaries == [target]:
        raise NothingToDo(f"{target} is already the primary; nothing to do")
    problem = emergency_problem(deployment, topology, target)
    if problem:
        raise UnsafePlan(problem)
    source = _old_primary(deployment, topology, target)
    synchronous = _was_synchronous(deployment, target)
    notes = [f"{source} does not answer: it cannot be fenced. If it comes back it must not "
             f"serve as a primary: make it a standby with `failover rejoin --site {source}`"]
    rpo = deployment.config.objectives.rpo_writes
    if synchronous:
        notes.append(f"replication to {target} was synchronous: no acknowledged write is missing")
    elif accept_data_loss:
        notes.append(f"replication was asynchronous: writes {source} acknowledged in its last "
                     "moments may be lost (accepted with --accept-data-loss)")
    elif rpo == 0:
        raise UnsafePlan(
            f"{target} may lack writes that {source} acknowledged (replication was "
            f"asynchronous and {source} cannot be asked how far it got), and the objective "
            "allows 0 lost writes; to promote anyway: --accept-data-loss"
        )
    else:
        notes.append(f"replication was asynchronous: up to the objective's {rpo} writes may "
                     "be lost")
    steps = (
        Step("check_emergency", f"{target} answers as a standby and no site as a primary",
             {"to": target}, 30, retry=True, changes=False),
        Step("check_rpo", f"let {target} replay all it received; record how far behind it is",
             {"site": target, "synchronous": synchronous,
              "accept_data_loss": accept_data_loss}, 60, retry=True, changes=False),
        Step("fence", f"fence {source} if it answers after all", {"site": source,
             "best_effort": True}, 15, retry=True),
        Step("await_lease", f"unless {source} was fenced, wait until its lease has lapsed "
             "(it fences itself then)", {"site": source},
             deployment.config.watch.lease_seconds + 30, retry=True, changes=False),
        Step("promote", f"promote {target}", {"site": target}, 60, retry=True),
        Step("wait_writable", f"wait until {target}'s app accepts writes", {"site": target},
             30, retry=True, changes=False),
        Step("switch_dns", f"point the records at {target} at every DNS provider and verify",
             {"site": target, "ttl": deployment.normal_ttl}, 60, retry=True),
        Step("sync_objects", f"copy what objects can still be read from {source} (missing only)",
             {"from": source, "to": target, "best_effort": True, "only_missing": True}, 120,
             retry=True),
        Step("check_result", f"{target} is the only primary and DNS answers it everywhere",
             {"primary": target, "standbys": [], "ttl": deployment.normal_ttl}, 30,
             retry=True, changes=False),
    )
    return Plan("promote", source, target, steps, tuple(notes))


def plan_rejoin(deployment: Deployment, site: str, topology: Topology) -> Plan:
    """Make a former primary a streaming standby of the current one."""
    deployment.config.site(site)
    primaries = [p for p in topology.primaries if p != site]
    if len(primaries) != 1:
        raise UnsafePlan(
            f"no other site answers as the only primary ({', '.join(topology.primaries) or 'none'}"
            f"); {site} can only rejoin a primary"
        )
    primary = primaries[0]
    if topology.sites[site].upstream == primary:
        raise NothingToDo(f"{site} already streams from {primary}; nothing to do")
    if deployment.compute(site) is None:
        raise UnsafePlan(f"site {site} has no compute adapter in {deployment.source}: make it "
                         f"a standby of {primary} by hand")
    steps = (
        Step("check_rejoin", f"{primary} is the primary", {"site": site, "primary": primary},
             30, retry=True, changes=False),
        Step("rejoin", f"make {site} a streaming standby of {primary} (pg_rewind, or a fresh "
             "base backup)", {"site": site, "primary": primary}, 300),
        Step("check_result", f"{site} streams from {primary}",
             {"primary": primary, "standbys": [site], "ttl": deployment.normal_ttl}, 30,
             retry=True, changes=False),
    )
    return Plan("rejoin", site, primary, steps)
