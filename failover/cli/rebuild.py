"""``failover rebuild``: make a spare site from nothing, from the off-provider backups."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click
import yaml

from failover.cli.base import config_option, json_option, say, state_dir_option, yes_option
from failover.cli.engine import EXITS, plan, run_move, show_plan
from failover.cluster.config import ClusterConfig
from failover.cluster.exceptions import ClusterUnavailable
from failover.engine.deployment import Deployment
from failover.engine.journal import RunRecord
from failover.engine.rebuild import ROLES, plan_rebuild, rebuild_deployment
from failover.exceptions import FailoverError
from failover.state import cluster_client, local_state_note

_site_option = click.option("--site", required=True, metavar="SITE",
                            help="The spare to rebuild (spares: in the config).")
_as_option = click.option("--as", "role", type=click.Choice(ROLES), default=None,
                          help="What it becomes [default: primary when no site answers as "
                          "one, else a standby of the one that does].")
_time_option = click.option("--to-time", metavar="TIME", default=None,
                            help="Restore to this time (ISO 8601 with offset, e.g. "
                            "2026-11-29T16:30:00+00:00) instead of the archive's end; "
                            "primary only.")
_without_cluster_option = click.option(
    "--without-cluster", is_flag=True,
    help="Keep the run lock and journal in the files beside the journal, not in the etcd "
    "cluster of watch.cluster: only when etcd lost its quorum with the lost providers (no "
    "controller can act then); restore etcd before controllers run again.")


class ClusterLost(FailoverError):
    """The etcd cluster that keeps the run lock and journal does not answer."""


def _prepare(site: str, without_cluster: bool) -> Callable[[Deployment], Deployment]:
    """The deployment a rebuild of ``site`` works on (with local state if asked: said so)."""
    def prepare(deployment: Deployment) -> Deployment:
        cluster = deployment.config.watch.cluster
        if without_cluster and cluster is not None:
            _refuse_a_cluster_that_answers(cluster)
        rebuilt = rebuild_deployment(deployment, site, without_cluster=without_cluster)
        if without_cluster and cluster is not None:
            say(local_state_note(rebuilt.config))
        return rebuilt
    return prepare


def _refuse_a_cluster_that_answers(cluster: ClusterConfig) -> None:
    """--without-cluster is for a cluster without quorum: one that answers would have a
    leader acting beside this rebuild, on another journal and lock."""
    try:
        revision = cluster_client(cluster).revision()
    except ClusterUnavailable:
        return
    raise FailoverError(f"the etcd cluster (watch.cluster) answers (revision {revision}): "
                        "run again without --without-cluster, so that this rebuild and the "
                        "controllers share one run lock and journal")


@contextmanager
def _cluster_answers(without_cluster: bool) -> Iterator[None]:
    """An unreachable cluster as one line that names --without-cluster."""
    try:
        yield
    except ClusterUnavailable as exc:
        if without_cluster:  # not the run lock nor the journal: its own words say what asked
            raise
        raise ClusterLost(
            "the etcd cluster (watch.cluster) that keeps the run lock and journal does not "
            "answer; if it lost its quorum with the lost providers, run again with "
            f"--without-cluster ({exc})") from None


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
@_without_cluster_option
@config_option
@state_dir_option
@yes_option
@json_option
def rebuild(site: str, role: str | None, to_time: str | None, without_cluster: bool,
            config: Path | None, state_dir: Path | None, yes: bool, as_json: bool) -> None:
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
        seen["d"] = _prepare(site, without_cluster)(deployment)
        return seen["d"]

    def after(record: RunRecord) -> None:
        if record.outcome == "ok":
            say(registration(seen["d"], site))

    with _cluster_answers(without_cluster):
        run_move(config, state_dir, "rebuild", site,
                 lambda d, t: plan_rebuild(d, site, t, role=role, to_time=when), yes, as_json,
                 prepare=prepare, after=after)


@plan.command("rebuild")
@_site_option
@_as_option
@_time_option
@_without_cluster_option
@config_option
@state_dir_option
@json_option
def plan_rebuild_cmd(site: str, role: str | None, to_time: str | None, without_cluster: bool,
                     config: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """The rebuild of spare SITE, with its checksum."""
    when = _check_time(to_time)
    with _cluster_answers(without_cluster):
        show_plan(config, state_dir, "rebuild", site,
                  lambda d, t: plan_rebuild(d, site, t, role=role, to_time=when), as_json,
                  prepare=_prepare(site, without_cluster))
