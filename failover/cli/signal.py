"""``failover signal termination``: tell the controller about a notice, by hand.

The notice goes where a provider's webhook would: a signed ``POST
/v1/signals`` to the running ``failover watch`` (see failover.watch.webhook
for the scheme), so the controller hears it exactly as it hears the others.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from failover.cli.base import config_option, json_option, state_dir_option
from failover.config import WatchConfig
from failover.engine.deployment import open_deployment
from failover.exceptions import ConfigError, FailoverError
from failover.watch.signals import Notice
from failover.watch.webhook import controller_url, load_secret, parse_deadline, post_signal

TIMEOUT = 5.0  # seconds to connect to the controller, and for its answer


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _refusal(response: httpx.Response) -> tuple[str | None, str]:
    """The controller's reason (None if it gave none) and its words, from its JSON or text."""
    try:
        data: Any = response.json()
    except ValueError:
        return None, " ".join(response.text.split())[:200] or response.reason_phrase
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, dict):
        reason, error = detail.get("reason"), detail.get("error") or detail.get("message")
        words = ": ".join(str(p) for p in (reason, error) if p) or json.dumps(data)
        return (str(reason) if reason else None), words
    return None, str(detail)


@click.group()
def signal() -> None:
    """Tell the controller (failover watch) about a notice, by hand."""


@signal.command()
@click.option("--provider", required=True, metavar="P",
              help="The provider that ends service: one of the sites' providers.")
@click.option("--deadline", required=True, metavar="T",
              help="When service ends: ISO 8601 with a zone (2026-11-24T12:00:00Z), or a "
              "time from now (+90s, +30m, +2h, +1d), or now.")
@click.option("--text", default="", help="Free text for the journal (the letter's words).")
@config_option
@state_dir_option
@json_option
def termination(provider: str, deadline: str, text: str, config: Path | None,
                state_dir: Path | None, as_json: bool) -> None:
    """Deliver a termination notice to the running controller (failover watch).

    The notice is signed with the controller's webhook secret
    ($FAILOVER_WEBHOOK_SECRET or watch.webhook_secret_file) and sent to
    watch.listen. The controller schedules the planned move before the
    deadline; the same notice sent twice is kept once. A deadline more than a
    minute in the past (a typo or a replay) or more than a year ahead is
    refused, here and by the controller.

    \b
    Exit status: 0 delivered (new or already known), 1 the controller did not
    take it (not running, or it refused), 2 bad options or configuration.
    """
    deployment = open_deployment(config, state_dir)
    providers = sorted({site.provider for site in deployment.config.sites.values()})
    if provider not in providers:
        raise ConfigError(f"no site runs at provider {provider!r}; the sites' providers: "
                          f"{', '.join(providers)}")
    now = time.time()
    try:
        when = parse_deadline(deadline, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--deadline") from None
    notice = Notice(provider, when, "cli", text, received=now, reference=_who())
    problem = notice.deadline_problem(now)
    if problem is not None:  # the controller would refuse it too; say so before sending
        raise click.BadParameter(problem[1], param_hint="--deadline")
    secret = load_secret(deployment.config.watch)
    url, response = _deliver(deployment.config.watch, secret, notice)
    if response.status_code in (401, 403):
        reason, words = _refusal(response)
        # A stale signature is this machine's clock, not its secret: each sending is signed anew.
        hint = ("this machine's clock must agree with the controller's" if reason == "stale"
                else "this machine's webhook secret must be the controller's")
        raise FailoverError(f"failover watch at {url} refused the notice "
                            f"(HTTP {response.status_code} {words}): {hint}")
    if response.status_code != 202:
        raise FailoverError(f"failover watch at {url} did not take the notice: HTTP "
                            f"{response.status_code} {_refusal(response)[1]}")
    try:
        answer = response.json()
        kept, new = answer["notice"], bool(answer["new"])
    except (ValueError, KeyError, TypeError):
        raise FailoverError(f"failover watch at {url} took the notice but its answer is not "
                            f"understood: {response.text[:200]}") from None
    if as_json:
        click.echo(json.dumps({**answer, "url": url}, indent=2))
        return
    at = datetime.fromtimestamp(float(kept.get("deadline", when)), UTC)
    click.echo(f"notice {kept.get('id', notice.id)} ({provider}, deadline "
               f"{at:%Y-%m-%d %H:%M:%S} UTC) delivered to failover watch at {url}: "
               + ("new" if new else "it had it already"))


def _deliver(config: WatchConfig, secret: bytes, notice: Notice) -> tuple[str, httpx.Response]:
    """Post the notice to the controller; with a cluster, to the first controller that
    answers (each keeps it in the shared store, where the leader acts on it)."""
    cluster = config.cluster
    places = list(cluster.controllers.values()) if cluster and cluster.controllers else []
    urls = [controller_url(listen) for listen in places or [config.listen]]
    for url in urls:
        try:
            return url, post_signal(url, secret, notice, TIMEOUT)
        except httpx.TransportError:
            continue
    raise FailoverError(f"failover watch is not answering at {', '.join(urls)}: start it "
                        "(failover watch) and send the notice again")

