"""The root command group: one clear line per error, a traceback only with --debug."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from failover import __version__
from failover.exceptions import FailoverError, UsageError

# No click envvar: $FAILOVER_STATE_DIR is only a default (read by default_state_dir),
# which --config overrides.
state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The lab's directory [default: $FAILOVER_STATE_DIR, else .failover/lab].",
)
config_option = click.option(
    "--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="A deployment's failover.yaml (default: the lab's, in the state dir).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def say(message: str) -> None:
    """Progress and outcomes go to stderr: stdout is kept for what a script reads."""
    click.echo(message, err=True)


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, only --yes may say yes (else UsageError, exit 2)."""
    if yes:
        return
    if not sys.stdin.isatty():
        asked = question.rstrip("?").strip()
        raise UsageError(f"--yes is missing: there is no terminal to confirm on, and this "
                         f"would {asked}; pass --yes to go ahead")
    click.confirm(question, abort=True, err=True)


class FailoverGroup(click.Group):
    """A command group that turns our errors into one line and an exit code.

    Commands may also be named lazily (``lazy[name] = "module:attribute"``): the
    module is imported when the command runs or help lists it, so that one
    command's process does not carry every other command's imports.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, the lazy ones' too."""
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A command by its name, importing its module the first time when it is lazy."""
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FailoverError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"failover: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            click.echo(f"failover: {str(exc) or 'interrupted'}", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(
                f"failover: unexpected error: {type(exc).__name__}: {exc} "
                "(run with --debug for a traceback)", err=True,
            )
            ctx.exit(1)


@click.group(cls=FailoverGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="failover")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Move a service between cloud providers in minutes, with proof.

    With neither --config nor --state-dir, commands use the embedded local
    lab in .failover/lab (or $FAILOVER_STATE_DIR).
    """
    ctx.obj = {"debug": debug}
