"""``failover rebuild``: make a spare site from nothing, from the off-provider backups."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
import yaml

from failover.cli.base import config_option, json_option, say, state_dir_option, yes_option
from failover.cli.engine import EXITS, plan, run_move, show_plan
from failover.engine.deployment import Deployment
from failover.engine.journal import RunRecord
from failover.engine.rebuild import ROLES, plan_rebuild, rebuild_deployment

_site_option = click.option("--site", required=True, metavar="SITE",
                            help="The spare to rebuild (spares: in the config).")
_as_option = click.option("--as", "role", type=click.Choice(ROLES), default=None,
                          help="What it becomes [default: primary when no site answers as "
                          "one, else a standby of the one that does].")
_time_option = click.option("--to-time", metavar="TIME", default=None,
                            help="Restore to this time (ISO 8601 with offset, e.g. "
                            "2026-11-29T16:30:00+00:00) instead of the archive's end; "
                            "primary only.")


def _check_time(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is no ISO 8601 time", param_hint="--to-time") \
            from None
    if when.tzinfo is None:
        raise click.BadParameter("give the offset too (e.g. +00:00): a restore must not "
                                 "guess the zone", param_hint="--to-time")
    return when.isoformat()


def registration(deployment: Deployment, site: str) -> str:
    """The change that makes the rebuilt spare a site the controller watches."""
    spare = deployment.config.site(site)
    data = spare.model_dump(mode="json", include=set(type(spare).model_fields) - {
        "provision", "agent_config_file", "agent_config_path", "agent_secret_path", "requirement",
        "boot_timeout"})
    text = yaml.safe_dump({"sites": {site: data}}, sort_keys=False)
    return (f"to have the controller watch {site}, move it from spares: to sites: in "
            f"{deployment.source} (then restart failover watch):\n{text}")


@click.command(epilog=EXITS)
@_site_option
@_as_option
@_time_option
@config_option
@state_dir_option
@yes_option
@json_option
def rebuild(site: str, role: str | None, to_time: str | None, config: Path | None,
            state_dir: Path | None, yes: bool, as_json: bool) -> None:
    """Rebuild SITE at a provider that had nothing: host, database, objects, DNS.

    Provisions the host through the provider's API (cloud-init starts the site
    agent), restores PostgreSQL from the newest backup plus archived WAL
    (through the agent), copies the objects its bucket lacks, and as the
    primary starts the app and points DNS at it. Journaled: the same command
    resumes a run cut short. Prints the change that adds SITE to the config.
    """
    when = _check_time(to_time)
    seen: dict[str, Deployment] = {}

    def prepare(deployment: Deployment) -> Deployment:
        seen["d"] = rebuild_deployment(deployment, site)
        return seen["d"]

    def after(record: RunRecord) -> None:
        if record.outcome == "ok":
            say(registration(seen["d"], site))

    run_move(config, state_dir, "rebuild", site,
          lambda d, t: plan_rebuild(d, site, t, role=role, to_time=when), yes, as_json,
          prepare=prepare, after=after)


@plan.command("rebuild")
@_site_option
@_as_option
@_time_option
@config_option
@state_dir_option
@json_option
def plan_rebuild_cmd(site: str, role: str | None, to_time: str | None, config: Path | None,
                     state_dir: Path | None, as_json: bool) -> None:
    """The rebuild of spare SITE, with its checksum."""
    when = _check_time(to_time)
    show_plan(config, state_dir, "rebuild", site,
          lambda d, t: plan_rebuild(d, site, t, role=role, to_time=when), as_json,
          prepare=lambda d: rebuild_deployment(d, site))
