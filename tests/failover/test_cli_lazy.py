"""The command line imports a command's module only when that command is asked for."""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from failover.cli import COMMANDS, cli

# What a controller (`failover watch`) has no use for until a drill draws its report.
HEAVY_FOR_WATCH = ("matplotlib", "failover.cli.lab", "failover.cli.stack", "failover.cli.drill",
                   "infra.lab.lab", "failover.runbooks.render", "failover.evidence.gather")


def test_every_lazy_name_is_the_name_of_the_command_it_imports() -> None:
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command)
        assert command.name == name


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.strip()}
    assert listed == set(COMMANDS)


def test_the_controllers_command_leaves_the_heavy_modules_unimported() -> None:
    probe = ("import json, sys, click\n"
             "from failover.cli import cli\n"
             "assert cli.get_command(click.Context(cli), 'watch') is not None\n"
             "print(json.dumps(sorted(sys.modules)))\n")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                           text=True, check=True, timeout=60).stdout))
    assert "failover.cli.watch" in loaded
    assert [m for m in HEAVY_FOR_WATCH if m in loaded] == []


def test_an_unknown_command_is_still_one_clear_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output


def test_a_subcommand_another_module_adds_is_there_in_a_fresh_process() -> None:
    # `failover plan rebuild` is registered by failover.cli.rebuild, which nothing else
    # imports when `plan` runs first.
    done = subprocess.run([sys.executable, "-m", "failover", "plan", "rebuild", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: failover plan rebuild")
    listed = subprocess.run([sys.executable, "-m", "failover", "plan", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert "rebuild" in listed.stdout.split("Commands:")[1]
