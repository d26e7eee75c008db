"""``failover lab up | status | down``: the embedded local lab."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from failover.cli.base import json_option, state_dir_option
from infra.lab.lab import Lab
from infra.lab.layout import LabLayout
from infra.lab.paths import default_state_dir
from infra.lab.status import lab_status, render


def _lab(state_dir: Path | None) -> Lab:
    return Lab(state_dir or default_state_dir())


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


@click.group()
def lab() -> None:
    """The embedded local lab: real servers on loopback.

    Site aws (PostgreSQL primary, the app, moto for S3, and Route 53 in a
    moto server of its own), site hetzner (a streaming standby, its app and
    its own S3 store), BIND 9 for the lab zone (RFC 2136 updates with a
    per-lab TSIG key).
    """


@lab.command()
@state_dir_option
@click.option("--subnet", default="127.0", show_default=True,
              help="Sites listen on SUBNET.10.1 (aws), .20.1 (hetzner), .30.1 (spare).")
@click.option("--dns-port", type=int, default=5300, show_default=True,
              help="BIND's port on 127.0.0.1.")
@json_option
def up(state_dir: Path | None, subnet: str, dns_port: int, as_json: bool) -> None:
    """Start the lab (a running lab is reported, not restarted)."""
    the_lab = _lab(state_dir)
    t0 = time.monotonic()
    state, started = the_lab.up(LabLayout(subnet=subnet, dns_port=dns_port), _progress)
    if started:
        _progress(f"lab up in {time.monotonic() - t0:.1f}s")
    else:
        _progress(f"lab already running in {the_lab.paths.root} (since {state.started_at})")
    status = lab_status(the_lab)
    click.echo(json.dumps(status, indent=2) if as_json else render(status))


@lab.command()
@state_dir_option
@json_option
def status(state_dir: Path | None, as_json: bool) -> None:
    """Show each part, its health and role, replication lag and DNS answers.

    Exits 0 when every part is healthy, 1 otherwise.
    """
    report = lab_status(_lab(state_dir))
    click.echo(json.dumps(report, indent=2) if as_json else render(report))
    if not report.get("healthy"):
        raise SystemExit(1)


@lab.command()
@state_dir_option
def down(state_dir: Path | None) -> None:
    """Stop every process of the lab by its PID and remove its data (logs stay)."""
    the_lab = _lab(state_dir)
    t0 = time.monotonic()
    outcomes = the_lab.down(_progress)
    if outcomes:
        click.echo(f"lab stopped in {time.monotonic() - t0:.1f}s ({len(outcomes)} processes); "
                   f"logs kept in {the_lab.paths.logs}")
    else:
        click.echo(f"no lab running in {the_lab.paths.root}")
