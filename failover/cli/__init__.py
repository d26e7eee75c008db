"""The ``failover`` command line."""

from __future__ import annotations

from failover.cli.base import cli
from failover.cli.drill import drill
from failover.cli.engine import COMMANDS
from failover.cli.lab import lab

cli.add_command(lab)
cli.add_command(drill)
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="failover")
