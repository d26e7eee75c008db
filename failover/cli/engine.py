"""``failover status | plan | switchover | promote | rejoin``: the engine's commands."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from failover.cli.base import (
    FailoverGroup,
    config_option,
    confirm,
    json_option,
    say,
    state_dir_option,
    yes_option,
)
from failover.engine.deployment import Deployment, Topology, open_deployment
from failover.engine.executor import execute, run_lock
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan, PlanKind
from failover.engine.plans import (
    NothingToDo,
    plan_or_resume,
    plan_promote,
    plan_rejoin,
    plan_switchover,
)
from failover.engine.status import deployment_status, render
from failover.exceptions import ConfigError

EXIT_WARNINGS = 3



@click.command()
@config_option
@state_dir_option
@json_option
def status(config: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """Who is primary, each standby's lag, what each DNS provider answers, the last run.

    Exits 0 when all is well, 1 when there is a warning (no primary, two
    primaries, a DNS provider not answering the primary, a lost standby).
    """
    report = deployment_status(open_deployment(config, state_dir))
    click.echo(json.dumps(report, indent=2) if as_json else render(report))
    if not report["healthy"]:
        sys.exit(1)


def _summary(record: RunRecord, notes: tuple[str, ...]) -> str:
    total = (record.ended or time.time()) - record.created
    lines = [f"{record.plan.kind} {record.plan.from_site} -> {record.plan.to_site}: "
             f"{record.outcome} (run {record.id}, {total:.1f}s since it began)"]
    for step in record.steps():
        took = f"{step.seconds:7.2f}s" if step.seconds is not None else "      -"
        lines.append(f"  {took}  {step.action}")
    lines += [f"  note: {n}" for n in notes]
    lines += [f"  WARNING: {w}" for w in record.warnings()]
    return "\n".join(lines)


def _plan_or_resume(
    deployment: Deployment, kind: PlanKind, target: str,
    make: Callable[[Deployment, Topology], Plan], as_json: bool,
) -> tuple[Plan | None, RunRecord | None]:
    """The unfinished run's plan to resume, else a new plan; None when there is nothing to do."""
    try:
        plan, resume = plan_or_resume(deployment, kind, target, make)
    except NothingToDo as done:
        say(str(done))
        if as_json:
            click.echo(json.dumps({"outcome": "nothing to do", "message": str(done)}))
        return None, None
    if resume is not None:
        say(f"run {resume.id} did not finish ({resume.outcome}); resuming it after step "
             f"{max(resume.done(), default=-1) + 1}")
    return plan, resume


def run_move(
    config: Path | None, state_dir: Path | None, kind: PlanKind, target: str,
    make: Callable[[Deployment, Topology], Plan], yes: bool, as_json: bool,
    prepare: Callable[[Deployment], Deployment] = lambda d: d,
    after: Callable[[RunRecord], None] = lambda r: None,
) -> None:
    """Plan (or resume) and run a move, then ``after`` with its record (before the exit)."""
    deployment = prepare(open_deployment(config, state_dir))
    with run_lock(deployment):
        plan, resume = _plan_or_resume(deployment, kind, target, make, as_json)
        if plan is None:
            return
        say(str(plan))
        confirm(f"run this {plan.kind} ({plan.from_site} -> {plan.to_site})?", yes)
        record = execute(deployment, plan, resume=resume, progress=say)
    if as_json:
        click.echo(json.dumps({**record.to_dict(), "notes": list(plan.notes)}, indent=2))
    else:
        click.echo(_summary(record, plan.notes))
    after(record)
    if record.warnings():
        sys.exit(EXIT_WARNINGS)


EXITS = (
    "Exit status: 0 done, 1 a step failed (run the same command again to resume), "
    "2 bad configuration or usage (e.g. no --yes without a terminal), "
    f"{EXIT_WARNINGS} done with warnings (e.g. a DNS provider failed)."
)


@click.command(epilog=EXITS)
@click.option("--to", "target", required=True, metavar="SITE", help="The site to move to.")
@config_option
@state_dir_option
@yes_option
@json_option
def switchover(
    target: str, config: Path | None, state_dir: Path | None, yes: bool, as_json: bool
) -> None:
    """Planned move of the primary to SITE: zero acknowledged writes lost.

    Lowers the TTL, syncs objects, makes replication synchronous, fences the
    old primary, waits for the target to replay the fenced LSN, promotes it,
    moves DNS at every provider, restores the TTL, syncs the objects taken in
    meanwhile, and makes the old primary a standby of the new one. Every step
    is journaled: if the run is cut short, the same command resumes it.
    """
    run_move(config, state_dir, "switchover", target,
          lambda d, t: plan_switchover(d, target, t), yes, as_json)


@click.command(epilog=EXITS)
@click.option("--site", "target", required=True, metavar="SITE", help="The standby to promote.")
@click.option("--accept-data-loss", is_flag=True,
              help="Promote even though writes the old primary acknowledged may be missing.")
@config_option
@state_dir_option
@yes_option
@json_option
def promote(
    target: str, accept_data_loss: bool, config: Path | None, state_dir: Path | None,
    yes: bool, as_json: bool,
) -> None:
    """Emergency move: promote SITE's standby when the primary is gone.

    Refused while any other site answers as a primary (use switchover), and,
    unless --accept-data-loss, when the standby may lack acknowledged writes
    beyond the RPO objective. The old primary cannot be fenced; rejoin it as a
    standby when it is back (failover rejoin --site OLD).
    """
    run_move(config, state_dir, "promote", target,
          lambda d, t: plan_promote(d, target, t, accept_data_loss=accept_data_loss),
          yes, as_json)


@click.command(epilog=EXITS)
@click.option("--site", required=True, metavar="SITE", help="The former primary.")
@config_option
@state_dir_option
@yes_option
@json_option
def rejoin(site: str, config: Path | None, state_dir: Path | None, yes: bool,
           as_json: bool) -> None:
    """Make a former primary a streaming standby of the current primary.

    Uses pg_rewind, or a fresh base backup when rewinding is impossible; needs
    the site's compute adapter (the lab has one).
    """
    run_move(config, state_dir, "rejoin", site, lambda d, t: plan_rejoin(d, site, t), yes, as_json)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--reason", default="abandoned by hand", show_default=True,
              help="Why, for the journal.")
@config_option
@state_dir_option
@yes_option
def abandon(run_id: str, reason: str, config: Path | None, state_dir: Path | None,
            yes: bool) -> None:
    """Give up on an unfinished run, so that other moves may be planned.

    Nothing is undone: the deployment stays as the run left it (see `failover
    status`). Use it when resuming cannot succeed, e.g. a final check that
    fails for a reason fixed by hand.
    """
    deployment = open_deployment(config, state_dir)
    with run_lock(deployment):
        run = deployment.journal.run(run_id)
        if run.settled:
            raise ConfigError(f"run {run_id} already ended ({run.outcome}); nothing to abandon")
        confirm(f"abandon run {run_id} ({run.plan.kind} to {run.plan.to_site})?", yes)
        deployment.journal.ended(run_id, "abandoned", reason)
    say(f"run {run_id} abandoned; the deployment stays as it left it")


@click.group(cls=FailoverGroup)
def plan() -> None:
    """Print what a move would do, step by step; touches nothing."""


# Registered by its module, imported when asked for (failover.cli imports commands lazily).
plan.lazy["rebuild"] = "failover.cli.rebuild:plan_rebuild_cmd"


def show_plan(config: Path | None, state_dir: Path | None, kind: PlanKind, target: str,
              make: Callable[[Deployment, Topology], Plan], as_json: bool,
              prepare: Callable[[Deployment], Deployment] = lambda d: d) -> None:
    """Print the plan a move would run (or the unfinished run it would resume)."""
    deployment = prepare(open_deployment(config, state_dir))
    plan_, _ = _plan_or_resume(deployment, kind, target, make, as_json)
    if plan_ is None:
        return
    click.echo(json.dumps(plan_.to_dict(), indent=2) if as_json else str(plan_))


@plan.command("switchover")
@click.option("--to", "target", required=True, metavar="SITE", help="The site to move to.")
@config_option
@state_dir_option
@json_option
def plan_switchover_cmd(target: str, config: Path | None, state_dir: Path | None,
                        as_json: bool) -> None:
    """The planned move to SITE, with its checksum."""
    show_plan(config, state_dir, "switchover", target,
          lambda d, t: plan_switchover(d, target, t), as_json)


@plan.command("promote")
@click.option("--site", "target", required=True, metavar="SITE", help="The standby to promote.")
@click.option("--accept-data-loss", is_flag=True, help="As for `failover promote`.")
@config_option
@state_dir_option
@json_option
def plan_promote_cmd(target: str, accept_data_loss: bool, config: Path | None,
                     state_dir: Path | None, as_json: bool) -> None:
    """The emergency move to SITE."""
    show_plan(config, state_dir, "promote", target,
          lambda d, t: plan_promote(d, target, t, accept_data_loss=accept_data_loss), as_json)


COMMANDS = (status, plan, switchover, promote, rejoin, abandon)
