"""The ``failover`` command line."""

from __future__ import annotations

from failover.cli.agent import agent
from failover.cli.backup import backup
from failover.cli.base import cli
from failover.cli.config import config
from failover.cli.drill import drill
from failover.cli.engine import COMMANDS
from failover.cli.evidence import evidence
from failover.cli.lab import lab
from failover.cli.rebuild import rebuild
from failover.cli.runbook import runbook
from failover.cli.signal import signal
from failover.cli.stack import stack
from failover.cli.watch import COMMANDS as WATCH_COMMANDS

cli.add_command(lab)
cli.add_command(agent)
cli.add_command(backup)
cli.add_command(drill)
cli.add_command(signal)
cli.add_command(rebuild)
cli.add_command(config)
cli.add_command(stack)
cli.add_command(evidence)
cli.add_command(runbook)
for command in (*COMMANDS, *WATCH_COMMANDS):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="failover")
