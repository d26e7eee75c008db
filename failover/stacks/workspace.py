"""The Pulumi stacks of the project in ``stacks/``, opened through Pulumi's Automation API.

The Automation API drives the ``pulumi`` CLI; it does not replace it. Without
the CLI, ``LocalWorkspace`` fails in its constructor (it runs ``pulumi
version``) with ``FileNotFoundError: 'pulumi'``. We look for the CLI first, to
say at once how to install it, and still translate that error should the look
miss it. Pulumi's own errors become one line each (``StackFailed``).

State goes to a file backend under the state dir (``<state_dir>/pulumi``)
unless ``PULUMI_BACKEND_URL`` names another. A file backend encrypts secrets
with a passphrase: ``PULUMI_CONFIG_PASSPHRASE`` or ``PULUMI_CONFIG_PASSPHRASE_FILE``
when given, else one generated once per state dir into a 0600 file beside the
state. Its contents are never logged or printed.

A stack deploys one site, one ``stacks/Pulumi.<stack>.yaml`` each: stack
``aws-primary`` deploys site ``aws`` (``failover.stacks.project`` says which stack a
``--site`` means). The functions here take the stack's name.

The default state dir is under the working directory: run from another folder,
``up`` would find no stack there and create everything again. So a stack with
nothing deployed is said to be so, naming the backend (``new_stack_notice``),
and a stack missing from the backend names it, the state dir and how to give another.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import failover
from failover.config import default_state_dir
from failover.exceptions import FailoverError
from failover.secretfiles import check_trusted_dir, read_private, write_private
from failover.stacks.project import check_stack

if TYPE_CHECKING:
    from pulumi.automation import OutputValue, Stack

# The repository's Pulumi project, beside the package (an editable install, as
# scripts/setup.sh makes); elsewhere, --project-dir names it.
PROJECT_DIR = Path(failover.__file__).resolve().parent.parent / "stacks"
BACKEND_ENV = "PULUMI_BACKEND_URL"
PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"
PASSPHRASE_FILE_ENV = "PULUMI_CONFIG_PASSPHRASE_FILE"
SECRET_MASK = "[secret]"  # what `pulumi stack output` itself prints for a secret
INSTALL_CLI = ("the Pulumi CLI is not installed (failover stack runs it through Pulumi's "
               "Automation API): install it with `curl -fsSL https://get.pulumi.com | sh` "
               "and put ~/.pulumi/bin on PATH")
INSTALL_SDK = ("the Pulumi SDK is not installed (failover stack runs Pulumi's Automation "
               "API): install it with `pip install -e '.[stacks]'`")

Which = Callable[[str], str | None]


class PulumiMissing(FailoverError):
    """The Pulumi CLI (or its Python SDK) that ``failover stack`` drives cannot be run."""

    exit_code = 2


class StackFailed(FailoverError):
    """A Pulumi command on a stack failed; the message carries Pulumi's own error line."""


def pulumi_dir(state_dir: Path) -> Path:
    """Where the default file backend and its passphrase live in a state dir."""
    return state_dir / "pulumi"


def backend_url(state_dir: Path, environ: Mapping[str, str]) -> str:
    """The backend stacks are kept in: $PULUMI_BACKEND_URL, else a file backend in the state dir."""
    return environ.get(BACKEND_ENV) or pulumi_dir(state_dir).absolute().as_uri()


@dataclass(frozen=True)
class Backend:
    """Where the stacks are kept, and how it was chosen: to say how to choose another."""

    url: str
    state_dir: Path  # absolute; its backend is the default one
    from_env: bool  # $PULUMI_BACKEND_URL named it, and the state dir plays no part

    def __str__(self) -> str:
        if self.from_env:
            return f"{self.url} (${BACKEND_ENV})"
        return f"{self.url} (state dir {self.state_dir})"

    def elsewhere(self) -> str:
        """How to name the backend a stack was deployed to, when it is not this one."""
        if self.from_env:
            return f"if it was deployed to another backend, name that one in ${BACKEND_ENV}"
        return ("if it was deployed from another state dir, give that one with --state-dir "
                "or FAILOVER_STATE_DIR (the default, .failover/lab, is under the current "
                "folder)")


def backend_of(state_dir: Path | None, environ: Mapping[str, str]) -> Backend:
    """The backend stacks are kept in, for the state dir given (else the default one)."""
    root = (state_dir or default_state_dir()).absolute()
    return Backend(backend_url(root, environ), root, bool(environ.get(BACKEND_ENV)))


def new_stack_notice(stack: str, backend: Backend, deployed: int) -> str | None:
    """What ``preview`` and ``up`` say of a stack with nothing deployed (``deployed``
    resources in its state) in the backend: None when something is."""
    if deployed:
        return None
    return (f"stack {stack} has nothing deployed in {backend}: `up` would create every "
            f"resource of it anew; {backend.elsewhere()}")


def deployed_resources(stack: Stack) -> int:
    """How many resources the stack's state in its backend holds (none: new or destroyed)."""
    state = stack.export_stack().deployment or {}
    return len(state.get("resources") or [])


def workspace_env(state_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """What Pulumi's commands get on top of ``environ``: backend and passphrase file, if ours.

    Creates the file backend's folder (0700) and its passphrase file (0600)
    when the state dir's own backend is used and no passphrase was given.
    """
    env = {"PULUMI_SKIP_UPDATE_CHECK": "true"}  # no release check on every command
    if environ.get(BACKEND_ENV):
        # A backend someone chose may be shared: its passphrase must be theirs too, not
        # one invented on this machine that would lock the others out of its secrets.
        return env
    root = pulumi_dir(state_dir)
    check_trusted_dir(root, "Pulumi state directory")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    env[BACKEND_ENV] = backend_url(state_dir, environ)
    if not (environ.get(PASSPHRASE_ENV) or environ.get(PASSPHRASE_FILE_ENV)):
        env[PASSPHRASE_FILE_ENV] = str(_passphrase_file(root))
    return env


def _passphrase_file(root: Path) -> Path:
    """The state dir's passphrase file: made once, then only checked (0600, no link)."""
    path = root / "passphrase"
    if path.exists() or path.is_symlink():
        read_private(path, "Pulumi passphrase file")  # refuses a link, or one others can read
    else:
        write_private(path, secrets.token_urlsafe(32) + "\n")
    return path


def require_cli(which: Which = shutil.which) -> None:
    """Refuse at once, with how to install it, when no ``pulumi`` is on PATH."""
    if which("pulumi") is None:
        raise PulumiMissing(INSTALL_CLI)


def _automation() -> ModuleType:
    # Imported when used: the SDK is an extra (`.[stacks]`), not needed by the lab or
    # the controller, and every other command starts without it.
    try:
        import pulumi.automation
    except ImportError:
        raise PulumiMissing(INSTALL_SDK) from None
    return pulumi.automation


def error_line(error: Exception) -> str:
    """Pulumi's own error line from a failed command: a Python traceback's last line, else
    the first ``error:``, else its first words.

    A ``CommandError`` keeps the command's output only in its text
    (``code: ...  stdout: ...  stderr: ...``). The program's diagnostics (stdout)
    say more than the CLI's closing ``error: update failed`` (stderr), so they come first.
    A program that raised is reported by Pulumi's Python host as ``error: Program failed
    with an unhandled exception:`` and a traceback: the exception's own line says what.
    """
    head, _, stderr = str(error).partition("\n stderr: ")
    stdout = head.partition("\n stdout: ")[2]
    raw = [*stdout.splitlines(), *stderr.splitlines()]
    lines = [line.strip() for line in raw]
    errors = [line for line in lines if line.startswith("error:")]
    said = [line for line in lines if line]
    found = _raised(raw) or (errors or said or ["pulumi failed and said nothing"])[0]
    return " ".join(found.split())


def _raised(lines: list[str]) -> str | None:
    """The exception line of the last Python traceback in ``lines``, if there is one.

    A traceback's frames are indented under its header; the exception's line
    is the first one after them at the header's own indentation.
    """
    found = None
    header: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if line.strip() == "Traceback (most recent call last):":
            header = indent
        elif header is not None and line.strip() and indent <= header:
            found, header = line.strip(), None
    return found


def _is_pulumi(program: object) -> bool:
    return Path(str(program)).name == "pulumi"


@contextmanager
def pulumi_errors(stack: str, backend: Backend) -> Iterator[None]:
    """Turn what Pulumi's Automation API raises into our errors, one line each."""
    auto = _automation()
    try:
        yield
    except FileNotFoundError as exc:
        if not _is_pulumi(exc.filename):
            raise
        raise PulumiMissing(INSTALL_CLI) from None
    except subprocess.CalledProcessError as exc:
        # Only `pulumi version`, in LocalWorkspace's constructor, runs through subprocess.
        if not _is_pulumi(exc.cmd[0] if isinstance(exc.cmd, list | tuple) else exc.cmd):
            raise
        raise PulumiMissing(f"`pulumi version` failed (exit {exc.returncode}): the Pulumi CLI "
                            f"on PATH is broken; {INSTALL_CLI.partition(': ')[2]}") from None
    except auto.InvalidVersionError as exc:
        raise PulumiMissing(f"the Pulumi CLI cannot be used: {' '.join(str(exc).split())}") \
            from None
    except auto.StackNotFoundError:
        raise StackFailed(f"stack {stack} has no state in {backend} yet: run `failover stack up "
                          f"--site {stack}` first, or, {backend.elsewhere()}") from None
    except auto.ConcurrentUpdateError as exc:
        raise StackFailed(f"stack {stack} is being changed by another update (wait for it to "
                          f"end): {error_line(exc)}") from None
    except auto.CommandError as exc:
        raise StackFailed(f"pulumi failed on stack {stack}: {error_line(exc)}") from None


@contextmanager
def opened_stack(
    stack: str, state_dir: Path | None = None, project_dir: Path | None = None, *,
    create: bool = True, which: Which = shutil.which,
) -> Iterator[Stack]:
    """The stack in a LocalWorkspace over the project, with Pulumi's errors translated.

    ``create`` makes the stack in the backend when it has none yet (preview,
    up); without it, a stack never deployed is an error (outputs, destroy).
    Errors raised inside the ``with`` block are translated too.
    """
    project = project_dir or PROJECT_DIR
    check_stack(stack, project)
    require_cli(which)
    auto = _automation()
    backend = backend_of(state_dir, os.environ)
    env = workspace_env(backend.state_dir, os.environ)
    with pulumi_errors(stack, backend):
        open_stack = auto.create_or_select_stack if create else auto.select_stack
        yield open_stack(stack_name=stack, work_dir=str(project),
                         opts=auto.LocalWorkspaceOptions(env_vars=env))


def plain_outputs(outputs: Mapping[str, OutputValue], *, show_secrets: bool) -> dict[str, Any]:
    """A stack's outputs as plain values, each secret as ``[secret]`` unless shown."""
    return {name: output.value if show_secrets or not output.secret else SECRET_MASK
            for name, output in sorted(outputs.items())}


def stack_outputs(stack: str, state_dir: Path | None) -> dict[str, Any]:
    """The outputs of a deployed stack, secrets included, as plain values."""
    with opened_stack(stack, state_dir, create=False) as opened:
        return plain_outputs(opened.outputs(), show_secrets=True)


def change_summary(changes: Mapping[Any, int] | None) -> str:
    """Pulumi's count of changes per operation in words, e.g. ``create 3, same 1``."""
    counts = [f"{op.value if isinstance(op, Enum) else op} {count}"
              for op, count in (changes or {}).items() if count]
    return ", ".join(counts) or "no resources"
