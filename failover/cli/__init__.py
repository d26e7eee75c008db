"""The ``failover`` command line.

Each command's module is imported only when that command runs (or help lists
it): ``failover watch``, which runs as a controller at every site, then
carries neither the drills' charts nor the lab's, the stacks' or the
runbooks' imports (tens of MiB a process).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from failover.cli.base import cli

# Every command, as "module:attribute"; tests/failover/test_cli_lazy.py checks each name.
COMMANDS = {
    "lab": "failover.cli.lab:lab",
    "agent": "failover.cli.agent:agent",
    "backup": "failover.cli.backup:backup",
    "drill": "failover.cli.drill:drill",
    "signal": "failover.cli.signal:signal",
    "rebuild": "failover.cli.rebuild:rebuild",
    "config": "failover.cli.config:config",
    "stack": "failover.cli.stack:stack",
    "evidence": "failover.cli.evidence:evidence",
    "runbook": "failover.cli.runbook:runbook",
    **{name: f"failover.cli.engine:{name}"
       for name in ("status", "plan", "switchover", "promote", "rejoin", "abandon")},
    "watch": "failover.cli.watch:watch",
    "approve": "failover.cli.watch:approve",
}
cli.lazy.update(COMMANDS)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``argv``: the arguments, else the command line's)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="failover")


def preload(argv: Sequence[str]) -> None:
    """Import the module of the command ``argv`` names, for ``infra.lab.prefork``: the lab's
    controllers forked from one parent share what ``failover watch`` imports."""
    names = [word for word in argv if not word.startswith("-")]
    if names and names[0] in COMMANDS:
        importlib.import_module(COMMANDS[names[0]].partition(":")[0])
