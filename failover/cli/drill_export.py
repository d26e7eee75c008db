"""``failover drill export``: a drill scenario as an experiment another tool runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from failover.chaostoolkit.experiment import FORMATS, ExportOptions, experiment
from failover.cli.base import config_option, say, state_dir_option
from failover.drill.results import Promise
from failover.drill.scenarios import SCENARIOS
from failover.engine.deployment import open_deployment

DEFAULTS = ExportOptions()


@click.command()
@click.argument("scenario", type=click.Choice(list(SCENARIOS)))
@click.option("--format", "form", type=click.Choice(FORMATS), default="chaostoolkit",
              show_default=True, help="The experiment's format.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the experiment here [default: standard output].")
@click.option("--notice", "notice_seconds", type=click.FloatRange(min=5),
              default=DEFAULTS.notice_seconds, show_default=True,
              help="termination-notice: seconds from the notice to the cut.")
@click.option("--warmup", "warmup_seconds", type=click.FloatRange(min=1),
              default=DEFAULTS.warmup_seconds, show_default=True,
              help="Seconds of load before the fault (the baseline).")
@click.option("--settle", "settle_seconds", type=click.FloatRange(min=1),
              default=DEFAULTS.settle_seconds, show_default=True,
              help="Seconds of load after recovery (after the cut).")
@click.option("--rate", type=click.FloatRange(min=1), default=DEFAULTS.rate,
              show_default=True, help="Requests per second, all users together.")
@click.option("--users", type=click.IntRange(1, 64), default=DEFAULTS.users,
              show_default=True, help="Synthetic users, each with its own DNS cache.")
@config_option
@state_dir_option
def export(scenario: str, form: str, out: Path | None, notice_seconds: float,
           warmup_seconds: float, settle_seconds: float, rate: float, users: int,
           config: Path | None, state_dir: Path | None) -> None:
    """Write SCENARIO as a Chaos Toolkit experiment, for `chaos run`.

    Its steady-state hypothesis is the deployment's objectives (one primary
    with the others streaming from it; each figure the scenario is judged on
    within its limit), its method the drill's fault under load, its rollback
    the fail back. It runs through the failover package's own Chaos Toolkit
    extension, so run it where failover is installed; the drill is kept in
    `failover drill history` like any other. Rollbacks run even when the
    experiment is aborted (its runtime asks for them always).

    With --config or --state-dir the experiment names that deployment; with
    neither, it acts on the lab that $FAILOVER_STATE_DIR (or .failover/lab)
    names where it runs. The objectives are read now, from the deployment.
    """
    deployment = open_deployment(config, state_dir)
    objectives = deployment.config.objectives
    target = ({"config": str(config.absolute())} if config is not None else
              {"state_dir": str(state_dir.absolute())} if state_dir is not None else {})
    options = ExportOptions(notice_seconds=notice_seconds, warmup_seconds=warmup_seconds,
                            settle_seconds=settle_seconds, rate=rate, users=users)
    document = experiment(SCENARIOS[scenario],
                          Promise(objectives.rto_seconds, objectives.rpo_writes), options,
                          target)
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text)
    say(f"{form} experiment for {scenario}: {out}; run it with: chaos run {out}")
