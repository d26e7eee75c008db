"""``failover backup``: the database's backups, kept at providers other than the primary's."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from failover.agent.client import AgentClient
from failover.cli.base import config_option, json_option, say, state_dir_option
from failover.engine.deployment import Deployment, open_deployment
from failover.exceptions import ConfigError, FailoverError

BACKUP_TYPES = ("full", "diff", "incr")


class NoPrimary(FailoverError):
    """No single primary answers, so no host can say what the repositories hold."""


def primary_agent(deployment: Deployment) -> tuple[str, AgentClient]:
    """The primary's site and its agent (the host that archives and backs up)."""
    topology = deployment.observe()
    primaries = topology.primaries
    if len(primaries) != 1:
        found = ", ".join(primaries) or "none"
        raise NoPrimary(f"backups are read through the primary's agent, and the primaries "
                        f"answering are: {found} (see `failover status`)")
    site = primaries[0]
    agent = deployment.agent(site)
    if agent is None:
        raise ConfigError(f"site {site} has no compute section: its backups are read through "
                          "its agent (compute: {kind: agent, ...})")
    return site, agent


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _bytes(count: int | None) -> str:
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def render(site: str, report: dict[str, Any], now: float) -> str:
    """The repositories' state as a table, one line each."""
    lines = [f"backups of the primary at {site}, stanza {report.get('stanza')}:",
             f"  {'REPOSITORY':<12} {'PROVIDER':<10} {'STATUS':<18} {'LAST FULL':<10} "
             f"{'LAST BACKUP':<16} {'LAST WAL':<26} {'WAL AGE':<8} {'UNARCHIVED':<11} SIZE"]
    for repo in report.get("repositories", []):
        full, last = repo.get("last_full"), repo.get("last_backup")
        full_age = _age(now - full["stopped"]) + " ago" if full and full.get("stopped") else "-"
        last_text = (f"{last['type']} {_age(now - last['stopped'])} ago"
                     if last and last.get("stopped") else "-")
        lines.append(
            f"  {repo['name']:<12} {repo['provider']:<10} {repo['status'][:18]:<18} "
            f"{full_age:<10} {last_text:<16} {repo.get('last_wal') or '-':<26} "
            f"{_age(repo.get('last_wal_age_seconds')):<8} "
            f"{_bytes(repo.get('unarchived_bytes')):<11} {_bytes(repo.get('backup_bytes'))}")
        if repo.get("error"):
            lines.append(f"    ! {repo['error']}")
    return "\n".join(lines)


@click.group()
def backup() -> None:
    """Database backups with pgBackRest, at providers other than the primary's.

    The primary's agent archives every WAL segment to each repository and takes
    a full backup into any repository that has none; these commands ask it.
    """


@backup.command("status")
@config_option
@state_dir_option
@json_option
def status_cmd(config: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """Per repository: the last full backup, the last archived WAL and its age, sizes.

    The WAL's age and the bytes not yet archived are what a rebuild from this
    repository would lose right now. Exits 1 when a repository has no valid
    backup or could not be read.
    """
    site, agent = primary_agent(open_deployment(config, state_dir))
    report = agent.run("backup/info", timeout=60)
    report = {"site": site, **report}
    click.echo(json.dumps(report, indent=2) if as_json else render(site, report, time.time()))
    if not all(r.get("ok") and not r.get("error") for r in report.get("repositories", [])):
        sys.exit(1)


@backup.command("now")
@click.option("--type", "kind", type=click.Choice(BACKUP_TYPES), default="incr",
              show_default=True, help="full, differential (since the last full) or "
              "incremental (since the last backup); with no full yet, a full.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="Seconds to wait for it.")
@config_option
@state_dir_option
@json_option
def now_cmd(kind: str, timeout: float, config: Path | None, state_dir: Path | None,
            as_json: bool) -> None:
    """Take a backup now, into every repository the primary uses.

    Exits 1 when any repository did not take it (the others keep theirs).
    """
    site, agent = primary_agent(open_deployment(config, state_dir))
    say(f"{kind} backup of {site} into its repositories ...")
    t0 = time.monotonic()
    result = agent.run("backup", {"type": kind}, timeout=timeout, progress=say)
    result = {"site": site, "seconds": round(time.monotonic() - t0, 1), **result}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for name, outcome in result["repositories"].items():
            click.echo(f"{name}: {outcome}")
        click.echo(f"took {result['seconds']:.1f}s")
    if any(outcome != "ok" for outcome in result["repositories"].values()):
        sys.exit(1)
