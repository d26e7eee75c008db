"""``failover agent``: run a site's agent, ask one, install one on a host."""

from __future__ import annotations

import json
from pathlib import Path

import click

from failover.agent.main import run_agent
from failover.cli.base import config_option, json_option, state_dir_option
from failover.engine.deployment import open_deployment
from failover.exceptions import UsageError


@click.group()
def agent() -> None:
    """The site agent: one per site's host, the engine's only hands on it.

    \b
    It runs the host's PostgreSQL and app as its children (restarting them
    with backoff), does the host operations the engine asks for (fence,
    unfence, rejoin, start, stop) behind a signed HTTP API, idempotent by
    operation id, and holds the primary's lease: when the controller stops
    renewing it, the primary fences itself.
    """


@agent.command("run")
@click.option("--config", "config_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The agent's own config (agent.yaml): site, listen, secret_file, postgres, app.")
def run(config_file: Path) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C (then stop the children)."""
    run_agent(config_file)


@agent.command("status")
@click.option("--site", required=True, help="The site whose agent to ask.")
@config_option
@state_dir_option
@json_option
def status(site: str, config: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """What a site's agent says of its host: role, timeline, lag, fence, lease, children."""
    deployment = open_deployment(config, state_dir)
    client = deployment.agent(site)
    if client is None:
        raise UsageError(f"site {site} has no agent in {deployment.source} (compute: kind agent)")
    said = client.status()
    if as_json:
        click.echo(json.dumps(said, indent=2))
        return
    lease = said.get("lease", {})
    click.echo(f"{site}: {said.get('role')} (timeline {said.get('timeline')}, lsn "
               f"{said.get('lsn')}, fenced: {said.get('fenced')}); lease {lease.get('state')}")
    for name, child in said.get("children", {}).items():
        click.echo(f"  {name}: {child.get('state')} (pid {child.get('pid')}, restarts "
                   f"{child.get('restarts')})")


@agent.command("install")
@click.option("--unit", is_flag=True, required=True,
              help="Write the systemd unit that runs the agent (failover-agent.service).")
@click.option("--agent-config", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/etc/failover/agent.yaml"), show_default=True,
              help="The config the unit runs the agent with.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/etc/systemd/system"), show_default=True,
              help="Where to write the unit.")
@click.option("--force", is_flag=True, help="Replace a different unit that is there.")
def install(unit: bool, agent_config: Path, dest: Path, force: bool) -> None:
    """Install the agent on this host as a systemd unit (then: systemctl enable --now
    failover-agent). A new server's cloud-init writes the very same unit."""
    from failover.agent.install import default_executable, install_unit

    path = install_unit(dest, agent_config, default_executable(), force=force)
    click.echo(f"wrote {path}; start it: systemctl daemon-reload && systemctl enable --now "
               f"{path.stem}")
