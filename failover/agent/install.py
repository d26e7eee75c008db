"""The agent on a real host: its systemd unit, and the cloud-init that sets up a new server.

Both come from one template each under ``infra/cloudinit/``, filled in with
`string.Template`; every value is checked and escaped for where it goes
(systemd's quoting on the ``ExecStart=`` line, YAML block scalars for file
contents, YAML double-quoted strings for the rest). The user-data embeds the very
text `render_unit` returns, so a server made by cloud-init and one where
``failover agent install --unit`` was run have the same unit.

Nothing here logs: the user-data carries the agent's secret.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any

import yaml

from failover.exceptions import ConfigError

UNIT_NAME = "failover-agent.service"
UNIT_DIR = Path("/etc/systemd/system")
UNIT_MODE = 0o644
# What to run once the unit is written (cloud-init runs the same, in order).
ENABLE_COMMAND = f"systemctl daemon-reload && systemctl enable --now {UNIT_NAME}"

DEFAULT_CONFIG_PATH = Path("/etc/failover/agent.yaml")
DEFAULT_SECRET_PATH = Path("/etc/failover/agent.secret")
DEFAULT_VENV = Path("/opt/failover")
DEFAULT_POSTGRES_PACKAGE = "postgresql-15"

_TEMPLATES = "infra.cloudinit"
# The template's write_files entries put `content:` at 4 spaces; a block scalar's
# lines go 2 deeper.
_CONTENT_INDENT = 6

_SITE = re.compile(r"[a-z][a-z0-9-]{0,31}")  # as the agent's config wants it
_POSTGRES_PACKAGE = re.compile(r"postgresql-[0-9]{2,}")
_SECRET = re.compile(r"[\x21-\x7e]{16,}")  # printable ASCII, no blanks: the agent strips
# Characters YAML takes as they are, minus its other line breaks (NEL, U+2028, U+2029)
# and the byte-order mark: anything else could change what the file says.
_UNSAFE = re.compile("[^\t\n\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
                     "|[\u2028\u2029\ufeff]")
# Characters that need quoting on a systemd command line.
_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def render_unit(config_path: Path, executable: str) -> str:
    """The agent's systemd unit: ``EXECUTABLE agent run --config CONFIG_PATH``, as root."""
    argv = [_absolute("the failover executable", executable), "agent", "run",
            "--config", _absolute("the agent config path", config_path)]
    return _template("failover-agent.service").substitute(
        exec_start=" ".join(_systemd_word(word) for word in argv))


def render_user_data(
    *,
    site: str,
    requirement: str,
    config_text: str,
    secret: str,
    config_path: Path = DEFAULT_CONFIG_PATH,
    secret_path: Path = DEFAULT_SECRET_PATH,
    venv: Path = DEFAULT_VENV,
    postgres_package: str = DEFAULT_POSTGRES_PACKAGE,
) -> str:
    """The ``#cloud-config`` user-data of a new server of ``site`` that runs its agent.

    ``requirement`` is what pip installs (``failover==0.2.0``, a wheel's URL);
    ``config_text`` the agent's config, written to ``config_path`` (0600);
    ``secret`` the agent's secret, written to ``secret_path`` (0600).
    """
    if not _SITE.fullmatch(site):
        raise ConfigError(f"site name {site!r} is not valid: a lowercase letter, then "
                          "lowercase letters, digits or '-', at most 32")
    if not _POSTGRES_PACKAGE.fullmatch(postgres_package):
        raise ConfigError(f"PostgreSQL package {postgres_package!r} is not valid: "
                          "expected a name like postgresql-15")
    if not _SECRET.fullmatch(secret):
        # Never quote the secret, not even in an error.
        raise ConfigError("the agent secret must be one line of at least 16 printable "
                          "characters without blanks (it is not shown here)")
    requirement = _one_line("the pip requirement", requirement)
    if not requirement or requirement.startswith("-"):
        raise ConfigError(f"the pip requirement {requirement!r} must name a package or a "
                          "wheel, not an option of pip")
    config_file = _absolute("the agent config path", config_path)
    secret_file = _absolute("the agent secret path", secret_path)
    venv_dir = _absolute("the venv directory", venv)
    _check_config(config_text, site, config_path, secret_path)
    unit = render_unit(config_path, f"{venv_dir}/bin/failover")
    return _template("user-data.yaml").substitute(
        site=site,
        postgres_package=postgres_package,
        config_path=_yaml_string(config_file),
        config=_yaml_file(config_text),
        secret_path=_yaml_string(secret_file),
        secret=_yaml_file(secret + "\n"),
        unit_path=_yaml_string(str(UNIT_DIR / UNIT_NAME)),
        unit=_yaml_file(unit),
        venv=_yaml_string(venv_dir),
        pip=_yaml_string(f"{venv_dir}/bin/pip"),
        requirement=_yaml_string(requirement),
        unit_name=_yaml_string(UNIT_NAME),
    )


def install_unit(dest_dir: Path, config_path: Path, executable: str, *,
                 force: bool = False) -> Path:
    """Write the unit as ``dest_dir/failover-agent.service`` (0644) and return its path.

    The same text already there is left alone; a different file is replaced only
    with ``force``.
    """
    text = render_unit(config_path, executable)
    dest = dest_dir / UNIT_NAME
    if not dest_dir.is_dir():
        raise ConfigError(f"cannot write the unit: {dest_dir} is not a directory")
    try:
        current = dest.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise ConfigError(f"cannot read {dest}: {exc.strerror}") from None
    if current == text:
        return dest
    if current is not None and not force:
        raise ConfigError(f"{dest} exists and differs from the unit this would write; "
                          "use --force to replace it")
    # Written aside and renamed: systemd never reads half a unit.
    fd, aside = tempfile.mkstemp(prefix=f".{UNIT_NAME}.", dir=dest_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(aside, UNIT_MODE)
        os.replace(aside, dest)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise
    return dest


def default_executable() -> str:
    """The ``failover`` command of this installation, for the unit's ``ExecStart=``."""
    beside = Path(sys.executable).parent / "failover"  # the venv's own script
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("failover")
    if found is None:
        raise ConfigError("cannot find the failover command to put in the unit; "
                          "give its absolute path")
    return str(Path(found).absolute())


def _template(name: str) -> Template:
    return Template(resources.files(_TEMPLATES).joinpath(name).read_text(encoding="utf-8"))


def _one_line(what: str, value: str) -> str:
    """``value`` when it has no line break or control character, else a ConfigError."""
    if _UNSAFE.search(value) or "\n" in value or "\t" in value:
        raise ConfigError(f"{what} must be one line without control characters: {value!r}")
    return value


def _absolute(what: str, value: str | os.PathLike[str]) -> str:
    text = _one_line(what, os.fspath(value))
    if not PurePosixPath(text).is_absolute():
        raise ConfigError(f"{what} must be an absolute path: {text!r}")
    return text


def _systemd_word(word: str) -> str:
    """One word of a systemd command line: ``%`` and ``$`` doubled, quoted when needed."""
    # %: a specifier (%h, %n); $: an environment variable; both must stay literal.
    word = word.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(word.replace("$", "_")):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _yaml_string(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of it)."""
    return json.dumps(value, ensure_ascii=False)


def _yaml_file(text: str) -> str:
    """A file's contents as the value of a ``content:`` key, read back byte for byte."""
    if _UNSAFE.search(text) or "\r" in text:
        raise ConfigError("a file for cloud-init holds characters YAML cannot carry as they "
                          "are (carriage returns or control characters)")
    first = text.split("\n", 1)[0]
    if not first or first[0] in " \t":
        # A block scalar learns its indentation from its first line: leading blanks
        # would be taken for indentation. A quoted string has no such rule.
        return _yaml_string(text)
    trailing = len(text) - len(text.rstrip("\n"))
    chomping = {0: "-", 1: ""}.get(trailing, "+")  # strip, clip, keep: exact line ends
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # the template's own line break ends the last line
    pad = " " * _CONTENT_INDENT
    return "|" + chomping + "".join("\n" + (pad + line if line else "") for line in lines)


def _check_config(text: str, site: str, config_path: Path, secret_path: Path) -> None:
    """Refuse an agent config that is not YAML or that names another site or secret."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("the agent config is not valid YAML: "
                          + " ".join(str(exc).split())) from None
    if not isinstance(data, dict):
        raise ConfigError("the agent config must be a YAML mapping (site:, listen:, ...)")
    if data.get("site", site) != site:
        raise ConfigError(f"the agent config is for site {data['site']!r}, not {site!r}")
    named = data.get("secret_file")
    if named is not None:
        # Relative paths in the agent's config are relative to the file itself.
        resolved = Path(os.path.normpath(config_path.parent / str(named)))
        if resolved != Path(os.path.normpath(secret_path)):
            raise ConfigError(f"the agent config reads its secret from {named!r}, but the "
                              f"user-data writes it to {str(secret_path)!r}")
