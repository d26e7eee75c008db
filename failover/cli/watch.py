"""``failover watch`` (the controller) and ``failover approve`` (its approve mode)."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from failover.cli.base import config_option, json_option, state_dir_option
from failover.config import FailoverConfig
from failover.engine.deployment import open_deployment
from failover.logs import log_event
from failover.state import open_store
from failover.watch.api import listening_socket, make_app, server
from failover.watch.controller import Controller
from failover.watch.leadership import Alone, Elected, Leadership
from failover.watch.mailbox import MailboxPoller
from failover.watch.webhook import load_notify_secret, load_secret

log = logging.getLogger("failover.watch")


async def _serve(controller: Controller, secret: bytes, listen: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    sock = listening_socket(listen)  # a port taken is an error before anything is watched
    api = server(make_app(controller, secret))
    serving = asyncio.create_task(api.serve(sockets=[sock]))
    log_event(log, "watch.listen", url=f"http://{listen}")
    mailbox = controller.config.mailbox
    poller_stop = None
    if mailbox is not None:
        poller_stop = threading.Event()
        poller = MailboxPoller(mailbox, controller.deliver, sorted(set(controller.sites.values())))
        threading.Thread(target=poller.run, args=(poller_stop,), name="mailbox",
                         daemon=True).start()
    try:
        await controller.run(stop)
    finally:
        if poller_stop is not None:
            poller_stop.set()
        api.should_exit = True
        await serving


@click.command()
@click.option("--mode", type=click.Choice(["auto", "approve"]), default=None,
              help="auto: act on each decision; approve: moves wait for `failover approve` "
              "[default: watch.mode in the configuration].")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Where the HTTP API listens [default: watch.cluster.controllers[SITE], "
              "else watch.listen].")
@click.option("--site", default=None, metavar="SITE",
              help="With watch.cluster: the site this controller runs at, its name in the "
              "leader election (one controller per site).")
@config_option
@state_dir_option
def watch(mode: str | None, listen: str | None, site: str | None, config: Path | None,
          state_dir: Path | None) -> None:
    """The controller: probe every site, hear notices, decide each tick, act.

    \b
    Probes: each site's app from every vantage point, each database, each
    DNS provider, each provider's API. A site is down when a quorum of
    vantage points saw `watch.failures` failed looks in a row; then the
    standby is promoted. A termination notice (signed webhook POST
    /v1/signals, `failover signal termination`, the mailbox, or the provider's
    API refusing our credentials) schedules the switchover a margin before
    its deadline and prepares it at once. Every decision is a logged sentence.

    \b
    \b
    With watch.cluster, run one per site (`--site aws`, `--site hetzner`, ...):
    they elect a leader on etcd; only the leader decides and acts, the others
    probe and take over when its key expires (watch.cluster.ttl). Signals
    and approvals reach the leader whichever controller or CLI takes them.

    \b
    HTTP API: GET /v1/status, POST /v1/signals, GET /metrics (Prometheus).
    Stops on SIGTERM or Ctrl-C, after the run under way (a killed controller
    resumes it from the journal when started again).
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(message)s")
    for chatty in ("httpx", "httpcore", "botocore", "hcloud"):  # a line per probe is noise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    deployment = open_deployment(config, state_dir)
    secret = load_secret(deployment.config.watch)
    leadership, listen = _leadership(deployment.config, site, listen)
    controller = Controller(deployment, mode=mode,
                            notify_secret=load_notify_secret(deployment.config.watch),
                            leadership=leadership)
    leadership.changed = controller.wake
    asyncio.run(_serve(controller, secret, listen))


def _leadership(config: FailoverConfig, site: str | None,
                listen: str | None) -> tuple[Leadership, str]:
    """How this controller takes part (alone, or in the cluster as ``site``); where it listens."""
    cluster = config.watch.cluster
    if cluster is None:
        if site is not None:
            raise click.UsageError("--site is for a cluster of controllers; this configuration "
                                   "has no watch.cluster, so one controller runs alone")
        return Alone(), listen or config.watch.listen
    places = [*config.sites, *config.spares]
    if site is None or site not in places:
        given = "no --site" if site is None else f"--site {site!r} is no site"
        raise click.UsageError(f"{given}: with watch.cluster each controller names the site it "
                               f"runs at, one of: {', '.join(places)}")
    return Elected(cluster, site), listen or cluster.controllers.get(site, config.watch.listen)


@click.command()
@click.argument("move_id", metavar="RUN")
@click.option("--by", default=getpass.getuser, show_default="your login name",
              help="Who approves: kept with the move, named in `failover evidence`.")
@config_option
@state_dir_option
@json_option
def approve(move_id: str, by: str, config: Path | None, state_dir: Path | None,
            as_json: bool) -> None:
    """Let a move the controller proposed (approve mode) go ahead.

    RUN is the id the controller's decision named (`failover approve 1a2b3c4d`;
    also in GET /v1/status under moves). The approval is kept in the
    controller's store, so it counts even while the controller restarts.
    """
    deployment = open_deployment(config, state_dir)
    move = open_store(deployment.config).approve(move_id, by=by)
    if as_json:
        click.echo(json.dumps(move.__dict__, indent=2))
    else:
        click.echo(f"approved: {move.kind} {move.from_site} -> {move.to_site} (move {move.id}); "
                   "the controller starts it at its next tick")


COMMANDS = (watch, approve)
