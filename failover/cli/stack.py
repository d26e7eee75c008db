"""``failover stack preview|up|destroy|outputs``: the sites' Pulumi stacks (Automation API)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from failover.cli.base import confirm, json_option, say, state_dir_option, yes_option
from failover.stacks.workspace import (
    BACKEND_ENV,
    PROJECT_DIR,
    change_summary,
    opened_stack,
    plain_outputs,
)

NEEDS = (
    "Needs the Pulumi CLI on PATH (curl -fsSL https://get.pulumi.com | sh) and the "
    "credentials of the stack's provider in the environment: AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and AWS_REGION for AWS, HCLOUD_TOKEN for Hetzner. "
    f"State is kept in a file backend in STATE_DIR/pulumi unless ${BACKEND_ENV} names another; "
    "in that one, secrets are encrypted with $PULUMI_CONFIG_PASSPHRASE(_FILE) or else a passphrase "
    "made once in STATE_DIR/pulumi/passphrase (keep it: the state's secrets need it). "
    "Exit status: 0 done, 1 Pulumi failed, 2 bad usage or no Pulumi CLI."
)

_site_option = click.option(
    "--site", required=True, metavar="SITE",
    help="The site's stack (a Pulumi.SITE.yaml in the project), e.g. aws-primary.",
)
_project_option = click.option(
    "--project-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None, help=f"The Pulumi project [default: {PROJECT_DIR}].",
)


@click.group(epilog=NEEDS)
def stack() -> None:
    """Preview, deploy, destroy and read the sites' Pulumi stacks.

    One stack per site, named after it; the program is the project in stacks/.
    """


def _stack_command(function: Callable[..., None]) -> click.Command:
    """A ``failover stack`` command with the options all four take: the site, where things are."""
    for option in (_project_option, state_dir_option, _site_option):
        function = option(function)
    return stack.command(epilog=NEEDS)(function)


def _change(site: str, planned: Callable[..., Any], apply: Callable[..., Any], question: str,
            yes: bool) -> None:
    """Unless --yes, show Pulumi's plan and ask; then apply it. All Pulumi says goes to stderr."""
    if not yes:
        say(f"{site}: {change_summary(planned(on_output=say, on_error=say).change_summary)}")
    confirm(question, yes)
    result = apply(on_output=say, on_error=say)
    click.echo(f"{site}: {change_summary(result.summary.resource_changes)}")


@_stack_command
def preview(site: str, state_dir: Path | None, project_dir: Path | None) -> None:
    """Show what `up` would change at the provider, changing nothing.

    Pulumi's report goes to stderr; the count of changes per operation to stdout.
    """
    with opened_stack(site, state_dir, project_dir) as the_stack:
        result = the_stack.preview(on_output=say, on_error=say)
    click.echo(f"{site}: {change_summary(result.change_summary)}")


@_stack_command
@yes_option
def up(site: str, state_dir: Path | None, project_dir: Path | None, yes: bool) -> None:
    """Create or update the site's resources at its provider (billed, real servers).

    Without --yes, a preview is shown first and a terminal asked to confirm.
    Pulumi's progress goes to stderr; the count of changes to stdout.
    """
    with opened_stack(site, state_dir, project_dir) as the_stack:
        _change(site, the_stack.preview, the_stack.up,
                f"apply these changes to stack {site} at its provider?", yes)


@_stack_command
@yes_option
def destroy(site: str, state_dir: Path | None, project_dir: Path | None, yes: bool) -> None:
    """Delete every resource of the site's stack at its provider (servers, data, addresses).

    The stack's history and config are kept, so `up` can make it again. Without
    --yes, the resources to delete are listed first and a terminal asked to confirm.
    """
    with opened_stack(site, state_dir, project_dir, create=False) as the_stack:
        _change(site, the_stack.preview_destroy, the_stack.destroy,
                f"delete every resource of stack {site} at its provider (its servers and "
                "the data on them)?", yes)


@_stack_command
@json_option
@click.option("--show-secrets", is_flag=True, help="Print secret outputs instead of [secret].")
def outputs(site: str, state_dir: Path | None, project_dir: Path | None, as_json: bool,
            show_secrets: bool) -> None:
    """Print the outputs of the site's last `up` (addresses, names, keys).

    Secret outputs print as [secret] unless --show-secrets.
    """
    with opened_stack(site, state_dir, project_dir, create=False) as the_stack:
        values = plain_outputs(the_stack.outputs(), show_secrets=show_secrets)
    if as_json:
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        return
    for name, value in values.items():
        click.echo(f"{name}: {value if isinstance(value, str) else json.dumps(value)}")

