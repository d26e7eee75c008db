"""The faults a drill injects, how the engine is let act on each, and what each expects.

A scenario is data plus a fault. It does three things with the drill's hands
(``DrillContext``): ``inject`` the fault at t=0 (or deliver the notice),
``act``: mostly, wait for the controller (a real ``failover watch`` the drill
runs) to detect it and move, and ``repair`` what it broke so that the old
site can be rebuilt as a standby and the drill can fail back. Only
``dns-provider-loss`` acts as an operator would, by hand, since its second
fault must land inside a switchover's promote step. What it expects is its
``objectives()``: the ones every drill is judged on, and its own ``expects``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

from failover.drill.clusterfaults import (
    MIDDLE_STEP,
    lose_member,
    member_back,
    nothing_happens,
    notice_to_follower,
    switch_losing_the_leader,
    termination_notice,
    thaw_with_controller,
    third_site,
    third_site_back,
)
from failover.drill.controller import DrillController
from failover.drill.faults import FaultInjector
from failover.drill.objectives import (
    Objective,
    archive_fresh,
    archived_writes_kept,
    deposed_leader_changed_nothing,
    leader_kept,
    move_finished_before_deadline,
    move_ran_once,
    no_decision_to_act,
    no_move_made,
    no_split_brain_writes,
    nothing_lost,
    rebuild_rto_met,
    resumed_once_by_new_leader,
    resumed_within_ttl,
    rpo_met,
    rto_met,
    run_ok,
    settled_media_kept,
    writes_kept_flowing,
)
from failover.engine.deployment import Deployment
from failover.engine.executor import FREEZE_BEFORE_STEP
from failover.engine.journal import RunRecord
from failover.engine.plan import Step
from failover.exceptions import ConfigError
from failover.watch.signals import Notice

__all__ = ["MIDDLE_STEP", "SCENARIOS", "DrillContext", "Scenario"]


class DrillContext(Protocol):
    """What a scenario may do: the drill's hands and its notebook."""

    from_site: str
    to_site: str
    standby_site: str  # the standby when the fault came (the move's target, unless a rebuild)
    deployment: Deployment
    faults: FaultInjector
    controller: DrillController  # the controllers: one, or one per site in a cluster
    notice_seconds: float
    fault_at: float  # time.time() when the fault was injected (or the notice given)

    def note(self, source: str, text: str) -> None:
        """Write an event on the timeline (now)."""

    def move(
        self, kind: Literal["switchover", "promote", "rebuild"], target: str, *,
        accept_data_loss: bool = False,
        before_step: Callable[[int, Step], None] | None = None,
    ) -> RunRecord | None:
        """Plan (or resume) and run a move with the engine; the run, or None if refused."""

    def signal(self, notice: Notice) -> str:
        """Deliver a notice to the controller by its signed webhook; a line for the timeline."""

    def await_move(self, kinds: tuple[str, ...]) -> RunRecord | None:
        """Wait for the controller's move (a run of one of ``kinds``) to end; None if none."""

    def wait_until(self, at: float) -> None:
        """Keep the workload going until time.time() reaches ``at``."""

    def primary_now(self) -> str:
        """The move's target if it answers as the primary now, else the old primary."""

    def provider(self, site: str) -> str:
        """The provider a site runs at."""


@dataclass(frozen=True)
class Scenario:
    """A named fault, how the drill plays it, and what it expects."""

    name: str
    summary: str
    planned: bool  # a notice came first: zero lost writes is the promise
    inject: Callable[[DrillContext], str]
    act: Callable[[DrillContext], RunRecord | None]
    repair: Callable[[DrillContext], None] = field(default=lambda _ctx: None)
    watched: bool = True  # the controller runs, detects and acts
    cuts: bool = False  # cuts a site off from the controller (its own group, root only)
    expects: tuple[Objective, ...] = ()  # objectives of its own, judged after the common ones
    # Its move makes a spare from backups: judged on the rebuild's own RTO and on losing
    # nothing older than the archive's bound, not on a warm standby's promises.
    rebuilds: bool = False
    teardown: Callable[[DrillContext], None] = field(default=lambda _ctx: None)
    # With controllers in a cluster: the site whose controller leads when the fault comes,
    # and more environment for that one alone (the engine's chaos hooks).
    leads: Callable[[DrillContext], str] = field(default=lambda ctx: ctx.to_site)
    leader_env: tuple[tuple[str, str], ...] = ()
    moves: bool = True  # False: nothing is meant to move (no recovery to wait for)
    judged_on: tuple[Objective, ...] | None = None  # instead of the usual (RTO, RPO, run)

    def objectives(self) -> tuple[Objective, ...]:
        """What the drill is judged on: RTO, RPO (none lost if planned), the run, its own."""
        if self.judged_on is not None:
            return (*self.judged_on, *self.expects)
        if self.rebuilds:
            # Media objects lost are reported, not judged: the copies are the warm standby's
            # promise (provider-blackout keeps it), and one run found them stalled, not yet
            # explained.
            return (rebuild_rto_met, archive_fresh, archived_writes_kept, run_ok,
                    *self.expects)
        if self.planned:
            return (rto_met, nothing_lost, run_ok, *self.expects)
        return (rto_met, rpo_met, settled_media_kept, run_ok, *self.expects)


# -- total loss -----------------------------------------------------------------------

def _lose_everything(ctx: DrillContext) -> str:
    lost = [ctx.faults.kill_site(site) for site in (ctx.from_site, ctx.standby_site)]
    return (f"{ctx.from_site} and {ctx.standby_site} are lost with their providers "
            f"(processes and object stores killed): {'; '.join(lost)}")


def _rebuilt(ctx: DrillContext) -> RunRecord | None:
    return ctx.move("rebuild", ctx.to_site)


def _standby_back(ctx: DrillContext) -> None:
    """The lost standby's provider comes back: it follows the rebuilt primary (if any)."""
    if ctx.primary_now() == ctx.to_site:
        for line in ctx.faults.restore_site(ctx.standby_site, ctx.to_site):
            ctx.note("failback", line)


def _spare_gone(ctx: DrillContext) -> None:
    """Once the primary is back home: the standby follows it, the spare's host is deleted."""
    for line in ctx.faults.restore_site(ctx.standby_site, ctx.from_site):
        ctx.note("failback", line)
    ctx.note("failback", ctx.faults.decommission(ctx.to_site))


# -- termination notice -------------------------------------------------------

def _notice(ctx: DrillContext) -> str:
    return (f"termination notice: {ctx.signal(termination_notice(ctx))}; "
            f"{ctx.from_site}'s processes are killed at the deadline")


def _switch_then_cut(ctx: DrillContext) -> RunRecord | None:
    run = ctx.await_move(("switchover",))
    ctx.wait_until(ctx.fault_at + ctx.notice_seconds)
    ctx.note("drill", f"deadline: {ctx.faults.kill_site(ctx.from_site)}")
    return run


# -- blackout and crash ---------------------------------------------------------

def _freeze(ctx: DrillContext) -> str:
    said = ctx.faults.freeze_site(ctx.from_site)
    if ctx.from_site in ctx.controller.sites:  # its controller goes dark with it
        said += f"; {ctx.controller.freeze(ctx.from_site)}"
    return f"{ctx.from_site} goes dark: {said} (SIGSTOP)"




def _crash(ctx: DrillContext) -> str:
    return f"{ctx.from_site}'s database crashes: {ctx.faults.crash_database(ctx.from_site)}"


def _promoted(ctx: DrillContext) -> RunRecord | None:
    # The lab's controller accepts the loss an emergency may bring
    # (watch.accept_data_loss), so the drill can measure it against the RPO.
    return ctx.await_move(("promote",))


def _promoted_then_resumed(ctx: DrillContext) -> RunRecord | None:
    """The promote; then the old site comes back (its provider's network returns) while
    clients that cached its address still write to it: it must take none of them."""
    run = _promoted(ctx)
    ctx.note("drill", f"{ctx.from_site} comes back: "
             f"{thaw_with_controller(ctx, ctx.from_site)}")
    return run


# -- partition ------------------------------------------------------------------------

def _cut(ctx: DrillContext) -> str:
    return (f"{ctx.from_site} is cut off from the controller and its vantage points (clients "
            f"still reach it): {ctx.faults.cut_off(ctx.from_site)}")


def _heal(ctx: DrillContext) -> None:
    ctx.note("drill", ctx.faults.heal(ctx.from_site))


# -- credentials revoked ------------------------------------------------------------

def _revoke(ctx: DrillContext) -> str:
    return (f"{ctx.provider(ctx.from_site)} refuses the account: "
            f"{ctx.faults.revoke_api_credentials(ctx.from_site)}")


def _moved(ctx: DrillContext) -> RunRecord | None:
    # The database still answers: the controller's switchover loses nothing.
    return ctx.await_move(("switchover", "promote"))


def _restore_credentials(ctx: DrillContext) -> None:
    ctx.note("drill", ctx.faults.restore_api_credentials(ctx.from_site))


# -- DNS provider loss --------------------------------------------------------------

def _lost_dns_provider(ctx: DrillContext) -> str:
    """The lab part serving the DNS provider the clients do not resolve through."""
    providers = ctx.deployment.config.dns_providers
    name, spec = next(((n, p) for n, p in providers.items() if p.kind != "rfc2136"),
                      list(providers.items())[-1])
    if spec.kind == "rfc2136":
        return ctx.faults.process_at(spec.server, spec.port)
    url = urlsplit(getattr(spec, "endpoint_url", None) or "")
    if not url.hostname or not url.port:
        raise ConfigError(f"DNS provider {name} has no local endpoint the lab serves")
    return ctx.faults.process_at(url.hostname, url.port)


def _plain_notice(ctx: DrillContext) -> str:
    return (f"planned switchover {ctx.from_site} -> {ctx.to_site}; one DNS provider "
            f"({_lost_dns_provider(ctx)}) will stop answering as the promote begins")


def _switch_losing_dns(ctx: DrillContext) -> RunRecord | None:
    process = _lost_dns_provider(ctx)
    frozen: list[str] = []

    def freeze_at_promote(_index: int, step: Step) -> None:
        if step.action == "promote" and not frozen:
            frozen.append(ctx.faults.freeze_process(process))
            ctx.note("drill", f"DNS provider lost: {frozen[0]} (SIGSTOP)")

    return ctx.move("switchover", ctx.to_site, before_step=freeze_at_promote)


def _thaw_dns(ctx: DrillContext) -> None:
    ctx.note("drill", ctx.faults.thaw_process(_lost_dns_provider(ctx)))


SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (
        Scenario(
            "termination-notice",
            "the provider announces the end of service at a deadline (a signed webhook to the "
            "controller): its switchover, then the old site is cut off (killed) at the deadline",
            planned=True, inject=_notice, act=_switch_then_cut,
            expects=(move_finished_before_deadline,),
        ),
        Scenario(
            "provider-blackout",
            "the primary site stops answering without warning (every process SIGSTOPped, "
            "so connections hang): the controller detects it and promotes the standby; then "
            "the old site comes back while clients still write to it, and takes none",
            planned=False, inject=_freeze, act=_promoted_then_resumed,
            expects=(no_split_brain_writes, move_ran_once),
            leads=lambda ctx: ctx.from_site,  # the leading controller goes dark with it
        ),
        Scenario(
            "total-loss",
            "the primary's provider and the standby's are both lost (processes and object "
            "stores killed): the spare site is made from nothing at a third provider, its "
            "host provisioned through the provider's API and its database restored from the "
            "backups and archived WAL kept there",
            planned=False, inject=_lose_everything, act=_rebuilt, repair=_standby_back,
            watched=False, rebuilds=True, teardown=_spare_gone,
        ),
        Scenario(
            "partition",
            "the primary site is cut off from the controller and its vantage points "
            "(nftables, root only) while clients and the standby still reach it: its lease "
            "lapses, so it fences itself, and the controller promotes the standby: no write "
            "is acknowledged there after the promote, none is lost",
            planned=False, inject=_cut, act=_promoted, repair=_heal,
            expects=(no_split_brain_writes,), cuts=True,
        ),
        Scenario(
            "db-primary-crash",
            "only the primary's PostgreSQL dies (SIGKILL): the controller detects it and "
            "promotes the standby",
            planned=False, inject=_crash, act=_promoted,
        ),
        Scenario(
            "dns-provider-loss",
            "one DNS provider (the lab's Route 53) stops answering during a planned "
            "switchover (by hand, no controller): the others are switched, the lost one is "
            "reported",
            planned=True, inject=_plain_notice, act=_switch_losing_dns, repair=_thaw_dns,
            watched=False,
        ),
        Scenario(
            "credentials-revoked",
            "the primary's provider API starts refusing our credentials (the account is "
            "blocked): the controller takes it as a termination and switches over",
            planned=True, inject=_revoke, act=_moved, repair=_restore_credentials,
        ),
        Scenario(
            "controller-site-loss",
            "a termination notice reaches a follower controller; the leading controller's "
            "site (the third, neither primary nor standby) goes dark in the middle of the "
            "switchover, once the old primary is fenced: a new leader takes the lead when "
            "the lease expires and resumes the move, which finishes once; the old leader, "
            "back, is refused and changes nothing",
            planned=True, inject=notice_to_follower, act=switch_losing_the_leader,
            repair=third_site_back, leads=third_site,
            leader_env=((FREEZE_BEFORE_STEP, MIDDLE_STEP),),
            judged_on=(nothing_lost, run_ok),
            expects=(move_ran_once, resumed_once_by_new_leader, resumed_within_ttl,
                     deposed_leader_changed_nothing),
        ),
        Scenario(
            "etcd-member-loss",
            "the etcd member at the leading controller's own site dies (SIGKILL): the other "
            "two keep the cluster's quorum, so nothing happens: the same leader with the "
            "same token, no move, no decision to act, no write lost or held up; the "
            "member is started again and rejoins",
            planned=True, inject=lose_member, act=nothing_happens, repair=member_back,
            moves=False, judged_on=(nothing_lost,),
            expects=(no_move_made, no_decision_to_act, leader_kept, writes_kept_flowing),
        ),
    )
}
