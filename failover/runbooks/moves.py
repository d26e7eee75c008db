"""The move kinds a runbook is written for, each from the plan the tool would run.

The planner is asked exactly as ``failover plan`` asks it, but about a world
described instead of observed (``PaperDeployment``): the primary streaming
to its standby for a planned move, the primary gone for an emergency, and so
on. So the runbook's steps are the plan's steps, with their titles, order,
parameters and timeouts; a change to a plan changes its runbook.

The configuration's first site is taken for the primary and its second for
the standby: the runbooks are written for a move from the first to the
second (the way back is the same with the names swapped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path

from failover.config import FailoverConfig
from failover.engine.deployment import ASK_TIMEOUT, Deployment, Readiness, SiteView, Topology
from failover.engine.journal import Journal, RunRecord
from failover.engine.plan import Plan, Step
from failover.engine.plans import plan_prepare, plan_promote, plan_rejoin, plan_switchover
from failover.engine.rebuild import plan_rebuild, rebuild_deployment
from failover.exceptions import FatalError, UnsafePlan
from failover.runbooks.model import Move, MoveStep


class _NoRuns(Journal):
    """A journal with no run in it: plans are made as on a fresh deployment."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent/journal.sqlite"))

    def runs(self, limit: int = 20) -> list[RunRecord]:
        return []


class _OnPaper:
    """A compute adapter that is never called: it only tells the planner a site has one."""

    def rejoin_database(self, site: str, primary: str, *, hba: str | None = None,
                        timeout: float = 120) -> str:
        raise FatalError("a runbook's deployment acts on nothing")


class PaperDeployment(Deployment):
    """A deployment whose servers answer from a described topology; it touches nothing."""

    def __init__(self, config: FailoverConfig, source: str,
                 topology: Topology | None = None) -> None:
        super().__init__(config, source)
        self.topology = topology or Topology()

    def observe(self, timeout: float = ASK_TIMEOUT) -> Topology:
        """The described topology."""
        return self.topology

    def readiness(self, site: str, timeout: float = 3.0) -> Readiness:
        """Every app ready: what a move's plan expects of its target."""
        return Readiness(True, f"{self.config.site(site).app_url}: taken as ready")

    def compute(self, site: str) -> _OnPaper | None:
        """A stand-in for the site's agent when the configuration names one."""
        return _OnPaper() if self.config.site(site).compute is not None else None

    @cached_property
    def journal(self) -> Journal:
        """No runs: a plan is made as on a fresh deployment."""
        return _NoRuns()

    def described(self, views: Iterable[SiteView]) -> PaperDeployment:
        """The same deployment, its servers answering ``views``."""
        return PaperDeployment(self.config, self.source, Topology({v.name: v for v in views}))


def _sites(d: PaperDeployment) -> tuple[str, str]:
    names = list(d.config.sites)
    return names[0], names[1]


def _streaming(d: PaperDeployment) -> PaperDeployment:
    primary, _ = _sites(d)
    return d.described([SiteView(primary, "primary", "0/3000000"), *[
        SiteView(s, "standby", "0/3000000", upstream=primary) for s in d.config.sites
        if s != primary]])


def _steps(plan: Plan, command: str | None) -> tuple[MoveStep, ...]:
    return tuple(MoveStep(s, command, i) for i, s in enumerate(plan.steps, 1))


def _by_hand(action: str, title: str, **params: object) -> MoveStep:
    return MoveStep(Step(action, title, params, changes=not action.startswith("check")), None)


def planned_switchover(d: PaperDeployment) -> Move:
    """The planned move: zero acknowledged writes lost."""
    p, s = _sites(d)
    plan = plan_switchover(d, s, _streaming(d).observe())
    command = f"failover switchover --to {s} --yes"
    return Move("planned-switchover", f"Planned switchover: {p} to {s}", p, s,
                f"{p} works and you choose to move the primary to {s}: maintenance, a "
                "provider's planned work, a drill. Nothing acknowledged is lost.",
                (f"failover plan switchover --to {s}", command), _steps(plan, command),
                plan.notes)


def termination_notice(d: PaperDeployment) -> Move:
    """A provider's notice: prepare at once, move before the deadline."""
    p, s = _sites(d)
    provider = d.config.site(p).provider
    plan = plan_switchover(d, s, _streaming(d).observe())
    first = len(plan_prepare(d, s, _streaming(d).observe()).steps)
    margin = d.config.watch.notice_margin_seconds
    return Move(
        "termination-notice", f"Termination notice: {provider} ends {p}'s service", p, s,
        f"{provider} has announced that it ends {p}'s service at a deadline (a letter, a "
        "webhook, a suspended account). The controller prepares at once (the first "
        f"{first} steps: low TTL, objects copied, synchronous replication: from then on an "
        f"emergency loses nothing) and makes the move {margin:g} s before the deadline.",
        (f"failover signal termination --provider {provider} --deadline +2h --text 'the "
         "letter'", "failover status",
         f"failover switchover --to {s} --yes   # now, or with no controller running"),
        _steps(plan, f"failover switchover --to {s} --yes"), plan.notes)


def emergency_promote(d: PaperDeployment) -> Move:
    """The primary is gone: promote the standby."""
    p, s = _sites(d)
    gone = d.described([SiteView(p, error="OperationalError: timeout"),
                        SiteView(s, "standby", "0/3000000")])
    plan = plan_promote(gone, s, gone.observe(), accept_data_loss=True)
    command = f"failover promote --site {s} --yes"
    return Move(
        "emergency-promote", f"Emergency promote: {p} is gone, {s} takes over", p, s,
        f"{p} does not answer and will not soon (its provider is dark, its host is lost), "
        f"and {s} no longer streams from it. Writes {p} acknowledged that had not reached "
        f"{s} are lost unless replication was synchronous (a move was under way); with an "
        "objective of 0 lost writes the tool then refuses unless given --accept-data-loss.",
        (f"failover plan promote --site {s}", command,
         f"{command} --accept-data-loss   # when it refuses for want of synchronous "
         "replication"), _steps(plan, command), plan.notes)


def rejoin(d: PaperDeployment) -> Move:
    """The old primary is back: make it a standby of the new one."""
    p, s = _sites(d)
    back = d.described([SiteView(p, "primary", "0/3000000", fenced=True),
                        SiteView(s, "primary", "0/4000000")])
    plan = plan_rejoin(back, p, back.observe())
    command = f"failover rejoin --site {p} --yes"
    return Move("rejoin", f"Rejoin: {p} comes back as a standby of {s}", p, s,
                f"{p} was the primary, {s} has taken over (an emergency promote, or a "
                f"switchover that could not rejoin it), and {p} answers again: fenced, or "
                "after a restart. It must not serve as a primary; it becomes a standby.",
                ("failover status", command), _steps(plan, command), plan.notes)


def rebuild_from_backups(d: PaperDeployment) -> Move:
    """Total loss: make a spare site from the backups."""
    p, s = _sites(d)
    spares = list(d.config.spares)
    title = "Rebuild from backups"
    if not spares or d.config.backups is None:
        return Move("rebuild-from-backups", title, p, "-",
                    "Both sites are lost and the backups are all that is left.", (), (),
                    (f"{d.source} has no spares and backups sections: there is nothing to "
                     "rebuild from; add them (README, 'Rebuild from backups')",))
    spare = spares[0]
    paper = PaperDeployment(rebuild_deployment(d, spare).config, d.source)
    lost = paper.described([SiteView(n, error="OperationalError: timeout")
                            for n in paper.config.sites])
    plan = plan_rebuild(lost, spare, lost.observe(), role="primary")
    command = f"failover rebuild --site {spare} --yes"
    return Move(
        "rebuild-from-backups", f"{title}: {spare} made from nothing", p, spare,
        f"{p} and {s} are both lost (or their data is), and {spare} is a spare: its address "
        "is reserved and its provider's API can make its host. It becomes the primary from "
        "the newest backup and the archived WAL, off both lost providers. To rebuild a "
        "standby of a live primary instead: --as standby.",
        (f"failover plan rebuild --site {spare}", command,
         f"{command} --to-time 2030-01-01T12:00:00+00:00   # to a time, before a bad change"),
        _steps(plan, command), plan.notes)


def lost_dns_provider(d: PaperDeployment) -> Move:
    """One DNS provider is lost: the others carry the zone."""
    p, s = _sites(d)
    provider = list(d.config.dns_providers)[-1]
    ttl = d.normal_ttl
    steps = (
        _by_hand("check_dns_provider", f"{provider} is lost; the others answer {p}",
                 provider=provider, site=p),
        _by_hand("switch_dns", f"the records point at {p} at every provider that answers",
                 site=p, ttl=ttl),
        _by_hand("update_delegation", f"{provider}'s name servers out of the delegation",
                 provider=provider),
        _by_hand("drop_dns_provider", f"{provider} out of the configuration",
                 provider=provider),
        _by_hand("check_result", f"{p} is the only primary and DNS answers it everywhere",
                 primary=p, standbys=[s], ttl=ttl))
    return Move(
        "lost-dns-provider", f"A lost DNS provider: {provider}", p, s,
        f"{provider} does not answer, refuses our credentials, or answers what it should "
        "not. Moves still work (each provider is published on its own; one that fails is a "
        "warning), but resolvers that ask it get stale answers or none.",
        ("failover status",), steps)


def revoked_credentials(d: PaperDeployment) -> Move:
    """A provider revoked our credentials: treat it as a notice, move away, rotate."""
    p, s = _sites(d)
    plan = plan_switchover(d, s, _streaming(d).observe())
    command = f"failover switchover --to {s} --yes"
    return Move(
        "revoked-credentials", f"Revoked credentials at {d.config.site(p).provider}", p, s,
        f"{p}'s provider refuses our keys (its API, its object store, Route 53): an account "
        "suspended, keys revoked. The controller takes it for a termination notice. Move the "
        f"primary away while {p} still runs, then get new keys. If only the standby's provider "
        "refuses, nothing moves: rotate its keys.",
        ("failover status", command),
        (_by_hand("check_credentials", f"which of {p}'s credentials are refused", site=p),
         *_steps(plan, command),
         _by_hand("rotate_credentials", f"new keys for {p}, in the files the config names",
                  site=p)), plan.notes)


def tool_down(d: PaperDeployment) -> Move:
    """The tool cannot act: the planned switchover, by hand."""
    p, s = _sites(d)
    plan = plan_switchover(d, s, _streaming(d).observe())
    return Move(
        "tool-down", "The tool itself is down: a switchover by hand", p, s,
        "The failover CLI does not run, its journal or configuration cannot be read, or the "
        "controller is down with no way to start it, and a move cannot wait. Every step "
        "below has its manual fallback: run those, in order. For an emergency (the primary "
        "gone), follow emergency-promote.md's manual fallbacks the same way.",
        ("failover status   # to confirm it is down",),
        (_by_hand("check_tool", "the tool cannot act"),
         _by_hand("stop_controller", "no controller acts meanwhile"),
         *_steps(plan, f"failover switchover --to {s} --yes"),
         _by_hand("record_manual_move", "the tool learns what was done by hand", site=s)),
        plan.notes)


MOVES: tuple[Callable[[PaperDeployment], Move], ...] = (
    planned_switchover, termination_notice, emergency_promote, rejoin, rebuild_from_backups,
    lost_dns_provider, revoked_credentials, tool_down,
)


def moves(deployment: PaperDeployment) -> list[Move]:
    """Every move kind, planned for ``deployment``; one the planner refuses says why."""
    out = []
    for make in MOVES:
        try:
            out.append(make(deployment))
        except UnsafePlan as refused:
            p, s = _sites(deployment)
            name = make.__name__.replace("_", "-")
            out.append(Move(name, name.replace("-", " ").capitalize(), p, s,
                            f"The tool would refuse this move here: {refused}", (), ()))
    return out
