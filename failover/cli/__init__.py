"""The ``failover`` command line."""

from __future__ import annotations

from failover.cli.base import cli
from failover.cli.lab import lab

cli.add_command(lab)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="failover")
