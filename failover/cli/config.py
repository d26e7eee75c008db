"""``failover config from-stacks``: the deployment's failover.yaml, from its Pulumi stacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from failover.cli.base import say, state_dir_option
from failover.exceptions import ConfigError, UsageError
from failover.stacks.fromstacks import SecretFiles, Sources, build_config, write_config

_EPILOG = (
    "Without --outputs-file every stack of the project is asked (through the Pulumi CLI, "
    "as `failover stack outputs` does). Exit status: 0 written, 1 Pulumi failed, 2 bad "
    "input (a stack's output, the file, an option)."
)
_file = click.Path(dir_okay=False, exists=True, path_type=Path)


@click.group()
def config() -> None:
    """The deployment's configuration file (failover.yaml)."""


@config.command("from-stacks", epilog=_EPILOG)
@click.option("--outputs-file", type=_file, default=None,
              help="JSON {stack: {output: value}}: each stack's `failover stack outputs "
                   "--json --show-secrets`. Without it, the stacks are asked.")
@click.option("--stack", "stacks", multiple=True, metavar="STACK",
              help="Ask only this stack (repeatable) [default: every Pulumi.<stack>.yaml].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the configuration here [default: print it].")
@click.option("--force", is_flag=True,
              help="Replace the file and secret files already there (else refused).")
@click.option("--secrets-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the secret files go (0600 each) [default: secrets/ beside --out, "
                   "else ./secrets].")
@click.option("--hcloud-token-file", type=_file, default=None,
              help="The Hetzner Cloud project's API token (0600): the controller watches "
                   "Hetzner's API with it, and a rebuild makes a spare with it.")
@click.option("--passfile", type=_file, default=None,
              help="The libpq password file the controller reaches each site's PostgreSQL "
                   "with.")
@state_dir_option
def from_stacks(outputs_file: Path | None, stacks: tuple[str, ...], out: Path | None,
                force: bool, secrets_dir: Path | None, hcloud_token_file: Path | None,
                passfile: Path | None, state_dir: Path | None) -> None:
    """Build failover.yaml from the stacks' outputs, check it, and write it.

    Secrets (agents' secrets, storage and API keys, the TSIG key) go to files in
    the secrets directory; the configuration names the files. Nothing is written
    unless the configuration passes the same checks as any failover.yaml, nor
    over a file already there unless --force.
    """
    if outputs_file is not None and stacks:
        raise UsageError("--stack asks stacks; --outputs-file already holds their outputs: "
                         "give one or the other")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out: {out.parent} is not a directory")
    outputs = _read(outputs_file) if outputs_file is not None else _ask(stacks, state_dir)
    base = out.parent.absolute() if out is not None else None
    directory = (secrets_dir or (base or Path.cwd()) / "secrets").absolute()
    files = SecretFiles(directory, base)
    sources = Sources(hcloud_token_file=_absolute(hcloud_token_file),
                      passfile=_absolute(passfile))
    text = write_config(build_config(outputs, files, sources), files, out, force=force)
    if out is None:
        click.echo(text, nl=False)
    else:
        say(f"wrote {out} ({len(files.contents)} secret files in {directory})")


def _absolute(path: Path | None) -> Path | None:
    return path.absolute() if path is not None else None


def _read(path: Path) -> dict[str, Any]:
    """The stacks' outputs from a JSON file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read stack outputs from {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {{stack: {{output: value}}}}")
    return data


def _ask(stacks: tuple[str, ...], state_dir: Path | None) -> dict[str, Any]:
    """Each stack's outputs, secrets shown, through the Pulumi CLI."""
    # Here, not at the top: the Automation API is only needed when the stacks are asked.
    from failover.stacks.project import known_stacks
    from failover.stacks.workspace import PROJECT_DIR, stack_outputs

    names = list(stacks) or known_stacks(PROJECT_DIR)
    if not names:
        raise UsageError(f"no stacks in {PROJECT_DIR} (no Pulumi.<stack>.yaml)")
    return {name: stack_outputs(name, state_dir) for name in names}
