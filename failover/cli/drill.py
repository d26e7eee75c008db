"""``failover drill``: a measured failover under load, reported, kept, then rolled back.

``failover drill`` alone runs a drill (the group runs it when no subcommand is
named, so every ``failover drill --yes --scenario X`` still does);
``failover drill history`` lists the drills kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from failover.cli.base import config_option, confirm, say, state_dir_option, yes_option
from failover.cli.drill_export import export
from failover.cli.drillhistory import history
from failover.drill import report as reports
from failover.drill.abort import AbortLimits
from failover.drill.recorded import fail_back_orphans, history_of, report_dir_for, run_recorded
from failover.drill.results import DrillReport
from failover.drill.runner import Drill, DrillOptions
from failover.drill.scenarios import SCENARIOS
from failover.drill.workload import WorkloadSpec
from failover.engine.deployment import open_deployment


def _scenarios_help() -> str:
    return "\n\n".join(f"{s.name}: {s.summary}." for s in SCENARIOS.values())


@click.group(invoke_without_command=True,
             epilog="Scenarios:\n\n" + _scenarios_help() + "\n\nExit status: 0 every "
             "objective met and the lab failed back, 1 an objective missed, the drill "
             "aborted or the fail back failed, 2 the drill could not start (no lab, "
             "unhealthy, bad option).")
@click.option("--scenario", type=click.Choice(list(SCENARIOS)), default="termination-notice",
              show_default=True, help="The fault to inject.")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Run N drills and report the median and worst of each figure.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the JSON report here (- for standard output).")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where report.json, report.md and timeline.png go "
              "[default: drills/<time>-<scenario> beside the configuration].")
@click.option("--no-failback", is_flag=True,
              help="Rebuild the old site as a standby but leave the primary where the drill "
                   "moved it.")
@click.option("--notice", "notice_seconds", type=click.FloatRange(min=5), default=60.0,
              show_default=True, help="termination-notice: seconds from the notice to the cut.")
@click.option("--rate", type=click.FloatRange(min=1), default=WorkloadSpec.rate,
              show_default=True, help="Requests per second, all users together.")
@click.option("--users", type=click.IntRange(1, 64), default=WorkloadSpec.users,
              show_default=True, help="Synthetic users, each with its own DNS cache.")
@click.option("--write-share", type=click.FloatRange(0, 1), default=WorkloadSpec.write_share,
              show_default=True, help="Share of requests that write.")
@click.option("--media-share", type=click.FloatRange(0, 1), default=WorkloadSpec.media_share,
              show_default=True, help="Share of writes that upload media first.")
@click.option("--settle", "settle_seconds", type=click.FloatRange(min=1), default=5.0,
              show_default=True, help="Seconds of load after recovery (after the cut).")
@click.option("--abort-error-rate", type=click.FloatRange(0, 1), default=None,
              help="Abort (then fail back) when the share of failed requests over 10 s "
                   "passes this (0: the first error).")
@click.option("--abort-write-unavailable", type=click.FloatRange(min=0), default=None,
              help="Abort (then fail back) when a user has been unable to write for this "
                   "many seconds in all.")
@config_option
@state_dir_option
@yes_option
@click.pass_context
def drill(
    ctx: click.Context, scenario: str, repeat: int, json_file: Path | None,
    report_dir: Path | None, no_failback: bool, notice_seconds: float, rate: float, users: int,
    write_share: float, media_share: float, settle_seconds: float,
    abort_error_rate: float | None, abort_write_unavailable: float | None,
    config: Path | None, state_dir: Path | None, yes: bool,
) -> None:
    """Fail over under load, measure what users saw, write a report, fail back.

    Synthetic users resolve the app's name at the authoritative DNS servers
    (honouring the TTL, as caching resolvers do) and write and read through
    it. The drill injects the scenario's fault and lets the engine act:
    a planned switchover when there was notice; detection, then the
    emergency promote (with --accept-data-loss, so that what is lost is
    measured) when there was none. It then counts, from the clients' side and
    the new primary's database: RTO (fault to the first write acknowledged at
    the new primary through DNS), write-unavailability (the unluckiest user's
    total), detection, DNS switch, each step, acknowledged and lost writes.
    Finally the old site is rebuilt as a standby and the primary moves back,
    so the next drill starts clean. Every drill is kept: `failover drill
    history` lists them.
    """
    if ctx.invoked_subcommand is not None:
        return
    options = DrillOptions(
        scenario=scenario, notice_seconds=notice_seconds, settle_seconds=settle_seconds,
        failback=not no_failback,
        workload=WorkloadSpec(rate=rate, users=users, write_share=write_share,
                              media_share=media_share),
        abort=AbortLimits(error_rate=abort_error_rate,
                          write_unavailable_seconds=abort_write_unavailable),
    )
    deployment = open_deployment(config, state_dir)
    base = report_dir or report_dir_for(deployment, scenario)
    confirm(f"run {repeat} {scenario} drill(s) on {deployment.source} (the primary moves "
            "and moves back)?", yes)
    history = history_of(deployment)
    fail_back_orphans(deployment, history, say)  # a drill whose runner died, first
    # With --json -, standard output is the JSON's alone: summaries go to stderr.
    show = say if json_file is not None and str(json_file) == "-" else click.echo
    runs: list[DrillReport] = []
    dirs: list[str] = []
    aborted = False
    for n in range(1, repeat + 1):
        if repeat > 1:
            say(f"== drill {n} of {repeat} ==")
        directory = base / f"run-{n}" if repeat > 1 else base
        done = run_recorded(Drill(deployment, options, say), trigger="cli",
                            report_dir=directory, history=history)
        report = done.report
        show(reports.render_summary(report, done.paths))
        if done.entry.aborted is not None:
            show(f"ABORTED: {done.entry.aborted}")
        runs.append(report)
        aborted = aborted or done.entry.aborted is not None
        dirs.append(directory.name)
        if not _failed_back(report):
            if n < repeat:
                say(f"the fail back failed: {repeat - n} drill(s) not run")
            break
    document = runs[0].to_dict()
    if repeat > 1:
        summary = reports.aggregate(runs)
        document = {**summary.to_dict(), "runs": [r.to_dict() for r in runs]}
        (base / "summary.json").write_text(json.dumps(document, indent=2))
        (base / "summary.md").write_text(reports.render_aggregate_markdown(summary, dirs))
        show(reports.render_aggregate(summary))
        show(f"summary: {base / 'summary.md'}")
    if json_file is not None:
        text = json.dumps(document, indent=2)
        if str(json_file) == "-":
            click.echo(text)
        else:
            json_file.write_text(text + "\n")
    passed = all(r.objectives_met and _failed_back(r) for r in runs)
    if not passed or aborted or len(runs) < repeat:
        sys.exit(1)


def _failed_back(report: DrillReport) -> bool:
    """Whether the lab was put back after the drill."""
    return report.failback is not None and report.failback.done


drill.add_command(history)
drill.add_command(export)
