"""``failover runbook render``: the runbooks, rendered from the plans the tool runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from failover.cli.base import say
from failover.exceptions import UsageError
from failover.runbooks.files import (
    RUNBOOKS,
    Source,
    default_lab,
    deployment_at,
    differences,
    lab_at,
    render_all,
    write,
)


@click.group()
def runbook() -> None:
    """Runbooks for on-call staff, one per move kind, rendered from the tool's own plans."""


def _source(config: Path | None, state_dir: Path | None) -> Source:
    if config is not None and state_dir is not None:
        raise UsageError("give --config or --state-dir, not both")
    if config is not None:
        return deployment_at(config)
    if state_dir is not None:
        return lab_at(state_dir)
    return default_lab()


@runbook.command()
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A real deployment's failover.yaml: its names, addresses, files, journal.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A running lab's directory: its addresses and paths, its journal.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the runbooks go [default: the repository's runbooks/ for the lab; "
              "runbooks/ beside the config file or in the state dir otherwise].")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 naming each file that differs from what would be "
              "rendered.")
def render(config: Path | None, state_dir: Path | None, out: Path | None, check: bool) -> None:
    """Render one Markdown runbook per move kind, and their README.

    \b
    Without --config or --state-dir: for the lab as `failover lab up` makes it
    (the committed runbooks; nothing is started). --config F: for a real
    deployment, with its names, addresses and files, and typical durations
    from its journal. --state-dir DIR: for the lab in DIR.

    \b
    Exit status: 0 written, or (--check) every file matches; 1 (--check) a
    file is missing or differs; 2 bad options or configuration.
    """
    source = _source(config, state_dir)
    if out is None:
        home = config.parent if config else state_dir
        out = home / "runbooks" if home is not None else RUNBOOKS
    files = render_all(source)
    if check:
        wrong = differences(files, out)
        for line in wrong:
            say(line)
        if wrong:
            how = "failover runbook render" + (f" --config {config}" if config else "") + \
                (f" --state-dir {state_dir}" if state_dir else "") + \
                (f" --out {out}" if out != RUNBOOKS else "")
            say(f"{len(wrong)} of {len(files)} runbooks are not what the code renders; "
                f"render them anew: {how}")
            sys.exit(1)
        say(f"all {len(files)} runbooks in {out} match what the code renders")
        return
    changed = write(files, out)
    say(f"{len(files)} runbooks in {out}: {len(changed)} written anew, "
        f"{len(files) - len(changed)} unchanged")
