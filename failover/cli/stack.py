"""``failover stack preview|up|destroy|outputs``: the sites' Pulumi stacks (Automation API)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from failover.cli.base import confirm, json_option, say, state_dir_option, yes_option
from failover.stacks.project import resolve_stack
from failover.stacks.workspace import (
    BACKEND_ENV,
    PROJECT_DIR,
    backend_of,
    change_summary,
    deployed_resources,
    new_stack_notice,
    opened_stack,
    plain_outputs,
)

if TYPE_CHECKING:
    from pulumi.automation import Stack

NEEDS = (
    "Needs the Pulumi CLI on PATH (curl -fsSL https://get.pulumi.com | sh) and the "
    "credentials of the stack's provider in the environment: AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and AWS_REGION for AWS, HCLOUD_TOKEN for Hetzner. "
    f"State is kept in a file backend in STATE_DIR/pulumi unless ${BACKEND_ENV} names another; "
    "in that one, secrets are encrypted with $PULUMI_CONFIG_PASSPHRASE(_FILE) or else a passphrase "
    "made once in STATE_DIR/pulumi/passphrase (keep it: the state's secrets need it). "
    "Run from another folder, the default STATE_DIR is another one: give it with --state-dir "
    "or FAILOVER_STATE_DIR. "
    "Exit status: 0 done, 1 Pulumi failed, 2 bad usage or no Pulumi CLI."
)

_site_option = click.option(
    "--site", required=True, metavar="SITE",
    help="The site (its failover:site, e.g. aws) or its stack's name (a Pulumi.STACK.yaml "
         "in the project, e.g. aws-primary).",
)
_project_option = click.option(
    "--project-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None, help=f"The Pulumi project [default: {PROJECT_DIR}].",
)


@click.group(epilog=NEEDS)
def stack() -> None:
    """Preview, deploy, destroy and read the sites' Pulumi stacks.

    One stack per site (aws-primary deploys site aws); the program is the project in
    stacks/. --site takes the site's name or the stack's.
    """


def _stack_command(function: Callable[..., None]) -> click.Command:
    """A ``failover stack`` command with the options all four take: the site, where things are."""
    for option in (_project_option, state_dir_option, _site_option):
        function = option(function)
    return stack.command(epilog=NEEDS)(function)


def _stack_of(site: str, project_dir: Path | None) -> str:
    """The stack ``--site`` means: the site's, or the stack of that name."""
    return resolve_stack(site, project_dir or PROJECT_DIR)


def _change(name: str, planned: Callable[..., Any], apply: Callable[..., Any], question: str,
            yes: bool) -> None:
    """Unless --yes, show Pulumi's plan and ask; then apply it. All Pulumi says goes to stderr."""
    if not yes:
        say(f"{name}: {change_summary(planned(on_output=say, on_error=say).change_summary)}")
    confirm(question, yes)
    result = apply(on_output=say, on_error=say)
    click.echo(f"{name}: {change_summary(result.summary.resource_changes)}")


def _notice(name: str, state_dir: Path | None, the_stack: Stack) -> str | None:
    """Say on stderr that the stack has nothing deployed in its backend, if so; returns it."""
    notice = new_stack_notice(name, backend_of(state_dir, os.environ),
                              deployed_resources(the_stack))
    if notice is not None:
        say(notice)
    return notice


@_stack_command
def preview(site: str, state_dir: Path | None, project_dir: Path | None) -> None:
    """Show what `up` would change at the provider, changing nothing.

    Pulumi's report goes to stderr; the count of changes per operation to stdout.
    """
    name = _stack_of(site, project_dir)
    with opened_stack(name, state_dir, project_dir) as the_stack:
        _notice(name, state_dir, the_stack)
        result = the_stack.preview(on_output=say, on_error=say)
    click.echo(f"{name}: {change_summary(result.change_summary)}")


@_stack_command
@yes_option
def up(site: str, state_dir: Path | None, project_dir: Path | None, yes: bool) -> None:
    """Create or update the site's resources at its provider (billed, real servers).

    Without --yes, a preview is shown first and a terminal asked to confirm.
    Pulumi's progress goes to stderr; the count of changes to stdout. A stack
    with nothing deployed in the backend is said to be so first.
    """
    name = _stack_of(site, project_dir)
    with opened_stack(name, state_dir, project_dir) as the_stack:
        new = _notice(name, state_dir, the_stack) is not None
        question = (f"create every resource of stack {name} anew at its provider (nothing of "
                    "it is deployed in this backend)?" if new else
                    f"apply these changes to stack {name} at its provider?")
        _change(name, the_stack.preview, the_stack.up, question, yes)


@_stack_command
@yes_option
def destroy(site: str, state_dir: Path | None, project_dir: Path | None, yes: bool) -> None:
    """Delete every resource of the site's stack at its provider (servers, data, addresses).

    The stack's history and config are kept, so `up` can make it again. Without
    --yes, the resources to delete are listed first and a terminal asked to confirm.
    """
    name = _stack_of(site, project_dir)
    with opened_stack(name, state_dir, project_dir, create=False) as the_stack:
        _change(name, the_stack.preview_destroy, the_stack.destroy,
                f"delete every resource of stack {name} at its provider (its servers and "
                "the data on them)?", yes)


@_stack_command
@json_option
@click.option("--show-secrets", is_flag=True, help="Print secret outputs instead of [secret].")
def outputs(site: str, state_dir: Path | None, project_dir: Path | None, as_json: bool,
            show_secrets: bool) -> None:
    """Print the outputs of the site's last `up` (addresses, names, keys).

    Secret outputs print as [secret] unless --show-secrets.
    """
    name = _stack_of(site, project_dir)
    with opened_stack(name, state_dir, project_dir, create=False) as the_stack:
        values = plain_outputs(the_stack.outputs(), show_secrets=show_secrets)
    if as_json:
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        return
    for output, value in values.items():
        click.echo(f"{output}: {value if isinstance(value, str) else json.dumps(value)}")
