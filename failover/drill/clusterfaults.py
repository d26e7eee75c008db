"""The faults of the controllers' cluster: the leader's site lost mid-move, an etcd member lost.

With a controller at each site (``watch.cluster.controllers``), two
scenarios are about the cluster itself. ``controller-site-loss``: the
leading controller (at the third site, neither primary nor standby) stops
itself in the middle of a switchover (the engine's FREEZE_BEFORE_STEP hook),
and the drill takes the rest of its site with it; a new leader must resume
the move once, and the old one, woken, must change nothing.
``etcd-member-loss``: the member at the leader's own site dies, and nothing
may happen. The scenarios' table is ``scenarios.SCENARIOS``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from failover.drill.controller import ControllerFailed, DrillController
from failover.drill.leadership import Deposed
from failover.engine.journal import RunRecord
from failover.waiting import WaitTimeout, wait_for
from failover.watch.signals import DRILL_REFERENCE, Notice

if TYPE_CHECKING:  # scenarios imports this module
    from failover.drill.scenarios import DrillContext


def thaw_with_controller(ctx: DrillContext, site: str) -> str:
    """SIGCONT a site's processes, and its controller if it has one; a sentence."""
    said = ctx.faults.thaw_site(site)
    if site in ctx.controller.sites:
        said += f"; {ctx.controller.thaw(site)}"
    return f"{said} (SIGCONT)"


def termination_notice(ctx: DrillContext) -> Notice:
    """The provider's notice that the primary's site ends at the drill's deadline."""
    provider = ctx.provider(ctx.from_site)
    return Notice(provider, ctx.fault_at + ctx.notice_seconds, "webhook",
                  f"drill: {provider} ends service for {ctx.from_site} in "
                  f"{ctx.notice_seconds:g}s", reference=f"{DRILL_REFERENCE}{ctx.fault_at:.0f}")


# In the middle of a switchover: the old primary is fenced (it takes no more writes)
# and the standby is not yet promoted.
MIDDLE_STEP = "catch_up"


def clustered(ctx: DrillContext, scenario: str) -> DrillController:
    """The drill's controllers, or why ``scenario`` cannot run with a lone one."""
    if ctx.controller.cluster is None:
        raise ControllerFailed(f"{scenario} needs a controller at each site "
                               "(watch.cluster.controllers); this deployment runs one")
    return ctx.controller


def third_site(ctx: DrillContext) -> str:
    """The site that is neither the primary nor its standby: its controller leads."""
    controller = clustered(ctx, "controller-site-loss")
    others = [s for s in controller.sites if s not in (ctx.from_site, ctx.standby_site)]
    if not others:
        raise ControllerFailed("controller-site-loss needs a controller at a third site "
                               f"besides {ctx.from_site} and {ctx.standby_site}")
    return others[0]


def notice_to_follower(ctx: DrillContext) -> str:
    leader, follower = third_site(ctx), ctx.to_site
    answer = ctx.controller.signal(termination_notice(ctx), site=follower)
    return (f"termination notice for {ctx.from_site} delivered to {follower}'s controller, a "
            f"follower ({leader} leads; notice {answer['notice']['id']}); {leader}'s "
            f"controller will stop itself as the switchover's {MIDDLE_STEP} begins")


def switch_losing_the_leader(ctx: DrillContext) -> RunRecord | None:
    """The leader's site goes dark in the middle of its switchover; a new leader resumes it.

    Then the old leader's site comes back: the move is over, and it must change nothing.
    """
    leader = third_site(ctx)
    facts = ctx.controller.facts
    assert facts is not None  # third_site: the controllers are a cluster
    try:
        wait_for(lambda: ctx.controller.stopped(leader), timeout=ctx.notice_seconds,
                 interval=0.1, what=f"{leader}'s controller to reach {MIDDLE_STEP}", retry_on=())
    except WaitTimeout as exc:
        ctx.note("drill", f"{leader}'s controller never stopped: {exc}")
        return ctx.await_move(("switchover",))
    facts.frozen_at = time.time()
    ctx.note("drill", f"{leader}'s controller stopped itself as {MIDDLE_STEP} began; {leader} "
             f"goes dark: {ctx.faults.freeze_site(leader)}; {ctx.controller.freeze(leader)} "
             "(SIGSTOP)")
    run = ctx.await_move(("switchover",))
    if run is not None and run.outcome == "ok":
        facts.deposed = wake_deposed(ctx, leader, run, facts.ttl)
    return run


def wake_deposed(ctx: DrillContext, site: str, run: RunRecord, ttl: float) -> Deposed:
    """Thaw the old leader's site and controller; what it changed once it woke."""
    journal = ctx.deployment.journal
    events, runs, primary = len(run.events), len(journal.runs(limit=20)), ctx.primary_now()
    log = ctx.controller.member(site).log
    offset = log.stat().st_size if log.exists() else 0
    ctx.note("drill", f"{site} comes back: {thaw_with_controller(ctx, site)}")

    def deposed() -> bool:  # it woke inside the move: its next write is refused, then it follows
        status = ctx.controller.status_of(site).get("cluster") or {}
        return not status.get("leading") and status.get("leader") not in (None, site) and \
            refusal(log, offset) is not None

    try:
        wait_for(deposed, timeout=3 * ttl, interval=0.2, what=f"{site}'s controller to be "
                 "refused and follow", retry_on=ControllerFailed)
    except WaitTimeout as exc:
        ctx.note("drill", str(exc))
    found = Deposed(len(journal.run(run.id).events) - events,
                    len(journal.runs(limit=20)) - runs, ctx.primary_now() != primary,
                    refusal(log, offset))
    ctx.note("controller", f"{site}'s controller, deposed: " + (
        f"refused ({found.refusal})" if found.refusal else "no refusal seen in its log") + (
        "; it changed nothing" if found.writes == 0 else
        f"; it wrote {found.events} event(s), began {found.runs} run(s)"
        + (", and the primary moved" if found.primary_moved else "")))
    return found


# What the controller logs when its run is refused for a stale token (watch.runs).
REFUSED = "event=watch.run outcome=deposed"


def refusal(log: Path, offset: int) -> str | None:
    """The first line after ``offset`` in which a controller's run was refused as deposed."""
    try:
        with open(log, errors="replace") as text:
            text.seek(offset)
            return next((line.strip()[:200] for line in text if REFUSED in line), None)
    except OSError:
        return None


def third_site_back(ctx: DrillContext) -> None:
    """The old leader's site thawed, if the drill ended before it was (SIGCONT is harmless)."""
    ctx.note("failback", ctx.faults.thaw_site(third_site(ctx)))


def lose_member(ctx: DrillContext) -> str:
    controller = clustered(ctx, "etcd-member-loss")
    assert controller.facts is not None  # clustered
    leader = controller.leader()
    site = controller.facts.lost_member = leader[0] if leader else ctx.to_site
    return (f"etcd@{site}, the member at the leading controller's own site, is lost: "
            f"{ctx.faults.kill_process(f'etcd@{site}')}")


def nothing_happens(ctx: DrillContext) -> RunRecord | None:
    """Keep the workload going for three lease TTLs; note what the drill saw then."""
    facts = ctx.controller.facts
    assert facts is not None  # lose_member: the controllers are a cluster
    ctx.wait_until(ctx.fault_at + 3 * facts.ttl)
    seen = ctx.controller.cluster_facts(ctx.fault_at, None)
    assert seen is not None
    ctx.note("drill", f"{3 * facts.ttl:g}s on: {'; '.join(seen.summary())}")
    return None


def member_back(ctx: DrillContext) -> None:
    """Start the lost member again over its data: it rejoins the cluster and serves."""
    facts = ctx.controller.facts
    if facts is None or facts.lost_member is None:
        return  # nothing was lost (the drill stopped before its fault)
    for line in ctx.faults.restore_site(facts.lost_member, ctx.primary_now()):
        ctx.note("drill", line)
