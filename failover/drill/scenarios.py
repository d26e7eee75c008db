"""The faults a drill injects, and how the engine is let act on each.

A scenario does three things with the drill's hands (``DrillContext``):
``inject`` the fault at t=0, ``act`` as the operator or the controller would
(a planned switchover on a notice; detection, then the emergency promote,
when a site goes dark), and ``repair`` what it broke so that the old site can
be rebuilt as a standby and the drill can fail back. Until the controller
exists (``failover watch``), detection here is the drill's own stand-in: the
primary's database probed every second, three failures in a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from failover.drill.probes import Detection
from failover.engine.journal import RunRecord
from failover.engine.plan import Step
from infra.providers.lab import LabCompute


class DrillContext(Protocol):
    """What a scenario may do: the drill's hands and its notebook."""

    from_site: str
    to_site: str
    compute: LabCompute
    notice_seconds: float
    fault_at: float  # time.time() when the fault was injected (or the notice given)

    def note(self, source: str, text: str) -> None:
        """Write an event on the timeline (now)."""

    def move(
        self, kind: Literal["switchover", "promote"], target: str, *,
        accept_data_loss: bool = False,
        before_step: Callable[[int, Step], None] | None = None,
    ) -> RunRecord | None:
        """Plan (or resume) and run a move with the engine; the run, or None if refused."""

    def detect(self) -> Detection | None:
        """Wait until the drill's stand-in detector finds the primary gone."""

    def wait_until(self, at: float) -> None:
        """Keep the workload going until time.time() reaches ``at``."""

    def lost_dns_provider(self) -> str:
        """The lab process that serves the DNS provider the drill takes away."""


@dataclass
class Scenario:
    """A named fault, and how the drill plays it."""

    name: str
    summary: str
    planned: bool  # a notice came first: zero lost writes is the promise
    inject: Callable[[DrillContext], str]
    act: Callable[[DrillContext], RunRecord | None]
    repair: Callable[[DrillContext], None] = field(default=lambda _ctx: None)


# -- termination notice -------------------------------------------------------

def _notice(ctx: DrillContext) -> str:
    return (f"termination notice: {ctx.from_site} ends service in "
            f"{ctx.notice_seconds:g}s; its processes are killed then")


def _switch_then_cut(ctx: DrillContext) -> RunRecord | None:
    run = ctx.move("switchover", ctx.to_site)
    ctx.wait_until(ctx.fault_at + ctx.notice_seconds)
    ctx.note("drill", f"deadline: {ctx.compute.kill_site(ctx.from_site)}")
    return run


# -- blackout and crash ---------------------------------------------------------

def _freeze(ctx: DrillContext) -> str:
    return f"{ctx.from_site} goes dark: {ctx.compute.freeze_site(ctx.from_site)} (SIGSTOP)"


def _crash(ctx: DrillContext) -> str:
    return f"{ctx.from_site}'s database crashes: {ctx.compute.crash_database(ctx.from_site)}"


def _detect_then_promote(ctx: DrillContext) -> RunRecord | None:
    found = ctx.detect()
    if found is None:
        ctx.note("drill", f"{ctx.from_site} was never detected as gone; nothing promoted")
        return None
    ctx.note("detector", f"{ctx.from_site} is gone: {found.probes} probes, the last: "
             f"{found.reason}")
    # The drill measures what an emergency loses, so it accepts the loss the
    # engine would otherwise refuse, and counts it against the RPO objective.
    return ctx.move("promote", ctx.to_site, accept_data_loss=True)


# -- DNS provider loss --------------------------------------------------------------

def _plain_notice(ctx: DrillContext) -> str:
    return (f"planned switchover {ctx.from_site} -> {ctx.to_site}; one DNS provider "
            f"({ctx.lost_dns_provider()}) will stop answering as the promote begins")


def _switch_losing_dns(ctx: DrillContext) -> RunRecord | None:
    process = ctx.lost_dns_provider()
    frozen: list[str] = []

    def freeze_at_promote(_index: int, step: Step) -> None:
        if step.action == "promote" and not frozen:
            frozen.append(ctx.compute.freeze_process(process))
            ctx.note("drill", f"DNS provider lost: {frozen[0]} (SIGSTOP)")

    return ctx.move("switchover", ctx.to_site, before_step=freeze_at_promote)


def _thaw_dns(ctx: DrillContext) -> None:
    ctx.note("drill", ctx.compute.thaw_process(ctx.lost_dns_provider()))


SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (
        Scenario(
            "termination-notice",
            "the provider announces the end of service at a deadline: planned switchover, "
            "then the old site is cut off (killed) at the deadline",
            planned=True, inject=_notice, act=_switch_then_cut,
        ),
        Scenario(
            "provider-blackout",
            "the primary site stops answering without warning (every process SIGSTOPped, "
            "so connections hang): detection, then the emergency promote",
            planned=False, inject=_freeze, act=_detect_then_promote,
        ),
        Scenario(
            "db-primary-crash",
            "only the primary's PostgreSQL dies (SIGKILL): detection, then the emergency "
            "promote",
            planned=False, inject=_crash, act=_detect_then_promote,
        ),
        Scenario(
            "dns-provider-loss",
            "one DNS provider (the lab's Route 53) stops answering during a planned "
            "switchover: the others are switched, the lost one is reported",
            planned=True, inject=_plain_notice, act=_switch_losing_dns, repair=_thaw_dns,
        ),
    )
}
