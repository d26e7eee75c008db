"""Which deployment the runbooks are rendered for, and the directory they are written to.

Three sources: the lab as ``failover lab up`` makes it with its defaults
(the committed runbooks: its configuration is built here without starting
anything, at the fixed state dir ``.failover/lab`` under the repository,
and paths are printed relative to the repository's root, so the files are
the same on every machine); another lab's state dir (``--state-dir``); a
real deployment's configuration (``--config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import failover
from failover.config import CONFIG_FILE_NAME, FailoverConfig, load_config, parse_config
from failover.exceptions import ConfigError
from failover.runbooks.durations import Durations
from failover.runbooks.hosts import HostFacts, Shown, lab_hosts, real_hosts
from failover.runbooks.moves import PaperDeployment, moves
from failover.runbooks.render import Context, render_index, render_move
from failover.runbooks.shell import Shell
from failover.state import RunJournal, existing_journal
from infra.lab.config import lab_config
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths

REPOSITORY = Path(failover.__file__).resolve().parent.parent
RUNBOOKS = REPOSITORY / "runbooks"  # the committed runbooks (an editable install's checkout)
LAB_STATE_DIR = Path(".failover") / "lab"  # `failover lab up`'s default, under the repository
INDEX = "README.md"


@dataclass(frozen=True)
class Source:
    """A deployment to render runbooks for, and how to print its paths."""

    config: FailoverConfig
    path: str  # its configuration file, as printed
    hosts: dict[str, HostFacts]
    shown: Shown
    journal: RunJournal | None  # where typical durations come from; None: rendered without
    deployment: str  # the deployment in words
    where: str  # where the manual commands run from


def _as_is(path: Path | str) -> str:
    return str(path)


def default_lab() -> Source:
    """The lab with ``failover lab up``'s defaults, at .failover/lab, built without starting."""
    root = REPOSITORY / LAB_STATE_DIR
    paths = LabPaths(root)
    config = parse_config(lab_config(LabLayout(), paths), CONFIG_FILE_NAME, root)

    def shown(path: Path | str) -> str:
        p = Path(path)
        return str(p.relative_to(REPOSITORY)) if p.is_relative_to(REPOSITORY) else str(p)

    return Source(config, shown(root / CONFIG_FILE_NAME), lab_hosts(paths, config, shown),
                  shown, None, f"the lab ({shown(root / CONFIG_FILE_NAME)}, as `failover lab "
                  "up` writes it)", "from the repository's root, as root (the lab runs its "
                  "servers as the postgres user)")


def _journal(config: FailoverConfig) -> RunJournal | None:
    return existing_journal(config)


def lab_at(state_dir: Path) -> Source:
    """A lab's state dir: its configuration, its journal, this machine's processes."""
    path = state_dir.absolute() / CONFIG_FILE_NAME
    if not path.exists():
        raise ConfigError(f"no lab in {state_dir}: {path} does not exist (failover lab up "
                          "writes it)")
    config = load_config(path)
    return Source(config, str(path), lab_hosts(LabPaths(state_dir.absolute()), config, _as_is),
                  _as_is, _journal(config), f"the lab in {state_dir.absolute()}",
                  "on this machine, as root")


def deployment_at(path: Path) -> Source:
    """A real deployment's configuration; its hosts as the stacks install them."""
    config = load_config(path)
    return Source(config, str(path.absolute()), real_hosts(config), _as_is, _journal(config),
                  f"{path.absolute()}", "on a machine that reaches every site's database, "
                  "DNS providers and object stores, with the files the configuration names")


def render_all(source: Source) -> dict[str, str]:
    """Every runbook (and the index) by file name."""
    deployment = PaperDeployment(source.config, source.path)
    ctx = Context(Shell(deployment, source.hosts, source.shown), Durations.read(source.journal),
                  source.deployment, source.where)
    kinds = moves(deployment)
    files = {f"{m.name}.md": render_move(ctx, m) for m in kinds}
    files[INDEX] = render_index(ctx, kinds)
    return files


def write(files: dict[str, str], out: Path) -> list[Path]:
    """Write the files into ``out`` (made if missing); returns those whose text changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in sorted(files.items()):
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def differences(files: dict[str, str], out: Path) -> list[str]:
    """Each file of ``out`` that is not what was rendered: missing, or changed."""
    found = []
    for name, text in sorted(files.items()):
        path = out / name
        if not path.exists():
            found.append(f"{path}: missing")
        elif path.read_text() != text:
            found.append(f"{path}: differs from what the code renders")
    return found
