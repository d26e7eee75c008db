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
from failover.engine.deployment import open_deployment
from failover.logs import log_event
from failover.state import open_store
from failover.watch.api import listening_socket, make_app, server
from failover.watch.controller import Controller
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
              help="Where the HTTP API listens [default: watch.listen].")
@config_option
@state_dir_option
def watch(mode: str | None, listen: str | None, config: Path | None,
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
    controller = Controller(deployment, mode=mode,
                            notify_secret=load_notify_secret(deployment.config.watch))
    asyncio.run(_serve(controller, secret, listen or deployment.config.watch.listen))


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
