"""``failover drill history``: the drills kept, as a listing or JSON, with a trend chart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from failover.cli.base import config_option, state_dir_option
from failover.drill.history import DrillHistory, history_path
from failover.drill.report.trend import render_history, render_trend_png
from failover.engine.deployment import open_deployment

CHART_NAME = "trend.png"


@click.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S",
                                              "%Y-%m-%d %H:%M:%S"]),
              default=None, help="Only drills begun at or after this time (UTC).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the drills as JSON (oldest first); no chart unless --chart.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the trend chart (PNG) here [default with the listing: "
                   "drills/trend.png beside the configuration].")
@config_option
@state_dir_option
def history(since: datetime | None, as_json: bool, chart: Path | None, config: Path | None,
            state_dir: Path | None) -> None:
    """List the drills kept, oldest first, with a trend chart of their figures.

    Every drill is kept, whoever started it (`failover drill`, the controller's
    schedule, a Chaos Toolkit experiment): when, which scenario, whether it
    passed, was aborted (and why) or broke, its RTO, the unluckiest user's
    time without writes, the writes lost of those acknowledged, and whether the
    lab was failed back. The chart draws RTO, write unavailability and lost
    writes per drill, coloured by outcome.
    """
    deployment = open_deployment(config, state_dir)
    entries = DrillHistory(history_path(deployment.config.journal)).entries(
        None if since is None else since.replace(tzinfo=UTC))
    if chart is None and not as_json and entries:
        chart = Path(deployment.source).parent / "drills" / CHART_NAME
    if chart is not None and entries:
        chart.parent.mkdir(parents=True, exist_ok=True)
        render_trend_png(entries, chart)
    written = chart if entries else None
    if as_json:
        click.echo(json.dumps({"drills": [e.to_dict() for e in entries],
                               "chart": None if written is None else str(written)}, indent=2))
        return
    if not entries:
        click.echo("no drills kept yet" + (f" since {since:%Y-%m-%d %H:%M:%S}" if since else "")
                   + "; run one: failover drill")
        return
    click.echo(render_history(entries))
    click.echo(f"trend chart: {written}")
