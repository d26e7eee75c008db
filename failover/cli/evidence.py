"""``failover evidence``: a dated report of the exit plan, in Markdown and HTML, to file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

import failover
from failover.cli.base import config_option, state_dir_option
from failover.engine.deployment import open_deployment
from failover.evidence.files import write_evidence
from failover.evidence.gather import gather
from failover.exceptions import UsageError

DEFAULT_PERIOD_DAYS = 90  # a quarter: the usual span of an audit's evidence
# The repository's runbooks/ (``failover runbook render`` writes them there).
REPOSITORY_RUNBOOKS = Path(failover.__file__).resolve().parent.parent / "runbooks"


@click.command()
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              metavar="DATE", help="First day of the period, YYYY-MM-DD (UTC) "
              f"[default: {DEFAULT_PERIOD_DAYS} days before today].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the report goes [default: evidence/ beside the configuration].")
@click.option("--runbooks", "runbooks_dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPOSITORY_RUNBOOKS, show_default="the repository's runbooks/",
              help="The runbooks whose checksums the report lists.")
@config_option
@state_dir_option
def evidence(since: datetime | None, out: Path | None, runbooks_dir: Path,
             config: Path | None, state_dir: Path | None) -> None:
    """Write the exit plan's evidence for a period, dated, for a person to file.

    It names the sites and their providers, the objectives, every drill in
    the period (verdict, figures, a chart), the scenarios not drilled in it
    (the gaps), the runbooks' checksums, and who approved moves by hand
    (approve mode). Written as exit-plan-evidence-<date>.md and .html (one
    file, its chart inside) with the chart's PNG beside them.
    """
    now = datetime.now(UTC)
    start = (since.replace(tzinfo=UTC) if since is not None
             else (now - timedelta(days=DEFAULT_PERIOD_DAYS)).replace(
                 hour=0, minute=0, second=0, microsecond=0))
    if start > now:
        raise UsageError(f"--since {start:%Y-%m-%d} is in the future: the period must have "
                         "begun")
    deployment = open_deployment(config, state_dir)
    gathered = gather(deployment.config, deployment.source, since=start,
                      runbooks_dir=runbooks_dir, now=now)
    paths = write_evidence(gathered, out or Path(deployment.source).parent / "evidence")
    click.echo(f"{len(gathered.drills)} drill(s) since {start:%Y-%m-%d}, "
               f"{len(gathered.gaps)} scenario(s) not drilled")
    for kind in ("md", "html", "png"):
        click.echo(f"{kind}: {paths[kind]}")
