"""Booting a server of the lab's FAKE Hetzner Cloud API: its cloud-config, interpreted.

A real server runs cloud-init on its ``user_data``; the fake cannot run
cloud-init or systemd, so it reads the ``#cloud-config`` document that
``failover.agent.install.render_user_data`` writes and does what it means on
this machine:

- every ``write_files`` entry under the fake's root (the lab's state dir) is
  written there with its permissions (each replaced whole: ``replace_file``);
  ``owner`` is not applied (the lab runs as one user);
- entries for the host's own setup are left alone: the systemd unit (read for
  its ``ExecStart=``, never installed) and PostgreSQL's packaging defaults;
  any other entry outside the root is refused;
- ``packages``, ``package_update`` and ``runcmd`` are not run: the lab's
  machine already has PostgreSQL and the failover package, and runcmd would
  only install them and start the unit;
- the unit's agent is started as ``python -m failover.agent --config PATH``
  (PATH from the unit's ``ExecStart=... --config PATH``), its log in the
  lab's logs dir (``agent@<site>.log``).

Anything else in the document is refused (``BadUserData``) before anything
is written or started: the fake boots failover agents, nothing it would
have to guess at.

The started agent is recorded in ``<root>/servers/<server name>.json`` with
the server as the API showed it. ``lab down`` stops it by that PID, and its
children by theirs (its ``children.json``); a restarted fake adopts the
servers recorded there. The fake itself never stops an agent but through its
record, and leaves them running when it exits itself.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from failover.agent.config import AgentConfig
from failover.agent.install import UNIT_DIR, UNIT_NAME
from failover.agent.supervisor import read_children
from failover.configpaths import resolve_paths
from failover.processes import ProcessRecord, is_alive, spawn, stop
from failover.secretfiles import replace_file
from infra.lab import refapp
from infra.lab.paths import LabPaths

HEADER = "#cloud-config"
# The host's own setup, which the lab's machine has already: written by cloud-init on
# a real server, left alone here.
HOST_DIRS = (PurePosixPath(UNIT_DIR), PurePosixPath("/etc/postgresql-common"))
# Top-level keys the fake knows what to do with (write, or leave to the machine).
KNOWN_KEYS = frozenset({"write_files", "packages", "package_update", "package_upgrade",
                        "runcmd"})
ENTRY_KEYS = frozenset({"path", "content", "permissions", "owner", "encoding", "defer"})
DEFAULT_MODE = 0o644  # cloud-init's, for an entry without permissions
SERVERS_DIR = "servers"


class BadUserData(ValueError):
    """User-data the fake cannot boot; nothing was written or started."""


@dataclass(frozen=True)
class FileToWrite:
    """One ``write_files`` entry under the root."""

    path: Path
    content: str
    mode: int


@dataclass(frozen=True)
class BootPlan:
    """What booting a server with some user-data does here."""

    files: tuple[FileToWrite, ...]
    config_path: Path  # the agent's, from the unit's ExecStart=
    site: str  # from the agent's config
    state_dir: Path  # the agent's: its children.json is there


@dataclass(frozen=True)
class Booted:
    """A server the fake booted: the agent it started and the server as the API shows it."""

    server: dict[str, Any]
    primary_ip: dict[str, Any] | None
    agent: ProcessRecord
    state_dir: Path

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {"server": self.server, "primary_ip": self.primary_ip,
                "agent": self.agent.to_dict(), "state_dir": str(self.state_dir)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Booted:
        """A record saved by ``to_dict``."""
        return cls(data["server"], data["primary_ip"], ProcessRecord.from_dict(data["agent"]),
                   Path(data["state_dir"]))


def interpret(user_data: str, root: Path) -> BootPlan:
    """What booting with ``user_data`` means under ``root``; raises BadUserData."""
    if user_data.split("\n", 1)[0].rstrip() != HEADER:
        raise BadUserData(f"user_data must be a cloud-config document (first line {HEADER})")
    try:
        data = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        raise BadUserData(f"user_data is not valid YAML: {_where(exc)}") from None
    if not isinstance(data, dict):
        raise BadUserData("user_data must be a YAML mapping (write_files:, runcmd:, ...)")
    unknown = sorted(str(k) for k in set(data) - KNOWN_KEYS)
    if unknown:
        raise BadUserData(f"the fake does not interpret {', '.join(unknown)} (it knows "
                          f"{', '.join(sorted(KNOWN_KEYS))})")
    entries = data.get("write_files") or []
    if not isinstance(entries, list):
        raise BadUserData("write_files must be a list")
    files, unit = [], None
    for i, entry in enumerate(entries):
        written = _entry(i, entry)
        if _is_under(written.path, root):
            files.append(written)
        elif not any(PurePosixPath(written.path).is_relative_to(d) for d in HOST_DIRS):
            raise BadUserData(f"write_files[{i}]: {written.path} is outside the fake's root "
                              f"{root}: nothing of a booted server may be written there")
        elif written.path == Path(UNIT_DIR / UNIT_NAME):
            unit = written.content
    if unit is None:
        raise BadUserData(f"no {UNIT_DIR / UNIT_NAME} among write_files: the fake boots "
                          "failover agents only")
    config_path = _config_path(unit)
    config = next((f for f in files if f.path == config_path), None)
    if config is None:
        raise BadUserData(f"the unit runs the agent with --config {config_path}, which this "
                          f"user_data does not write under {root}")
    agent = _agent_config(config)
    return BootPlan(tuple(files), config_path, agent.site, agent.state_dir)


def _where(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without the snippet PyYAML quotes (it may be the secret's line)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or type(exc).__name__}{where}"


def _entry(i: int, entry: object) -> FileToWrite:
    if not isinstance(entry, dict):
        raise BadUserData(f"write_files[{i}] must be a mapping (path:, content:, ...)")
    unknown = sorted(str(k) for k in set(entry) - ENTRY_KEYS)
    if unknown:
        raise BadUserData(f"write_files[{i}]: the fake does not interpret {', '.join(unknown)}")
    path, content = entry.get("path"), entry.get("content") or ""
    if not isinstance(path, str) or not PurePosixPath(path).is_absolute():
        raise BadUserData(f"write_files[{i}]: path must be an absolute path")
    if not isinstance(content, str) or entry.get("encoding", "text/plain") != "text/plain":
        raise BadUserData(f"write_files[{i}]: content must be plain text")
    mode = entry.get("permissions", DEFAULT_MODE)
    try:  # as cloud-init reads it: YAML's own octal (0600 unquoted) or an octal string
        mode = mode if isinstance(mode, int) else int(str(mode), 8)
    except ValueError:
        raise BadUserData(f"write_files[{i}]: permissions must be octal, e.g. \"0600\"") \
            from None
    if not 0 <= mode <= 0o7777:
        raise BadUserData(f"write_files[{i}]: permissions {mode:o} are no file mode")
    return FileToWrite(Path(os.path.normpath(path)), content, mode)


def _is_under(path: Path, root: Path) -> bool:
    """Whether ``path`` is below ``root``, also once symbolic links on the way are followed."""
    return path.is_relative_to(root) and path != root and \
        path.resolve().is_relative_to(root.resolve())


def _config_path(unit: str) -> Path:
    """The agent config that the unit's ``ExecStart=`` names after ``--config``."""
    lines = [line.strip() for line in unit.splitlines()]
    starts = [line.split("=", 1)[1] for line in lines if line.startswith("ExecStart=")]
    if len(starts) != 1:
        raise BadUserData(f"{UNIT_NAME} must have one ExecStart= line")
    try:
        # systemd's quoting, as render_unit writes it: shell-like words, % and $ doubled.
        words = [w.replace("%%", "%").replace("$$", "$")
                 for w in shlex.split(starts[0].lstrip("-@:+!"))]
    except ValueError as exc:
        raise BadUserData(f"{UNIT_NAME}: ExecStart= cannot be read: {exc}") from None
    if "--config" in words[:-1]:
        path = words[words.index("--config") + 1]
    else:
        path = next((w.split("=", 1)[1] for w in words if w.startswith("--config=")), "")
    if not PurePosixPath(path).is_absolute():
        raise BadUserData(f"{UNIT_NAME}: ExecStart= names no absolute --config PATH")
    return Path(os.path.normpath(path))


def _agent_config(config: FileToWrite) -> AgentConfig:
    try:
        data = yaml.safe_load(config.content)
        return AgentConfig.model_validate(resolve_paths(data, config.path.parent))
    except yaml.YAMLError as exc:
        raise BadUserData(f"the agent config {config.path} is not valid YAML: "
                          f"{_where(exc)}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BadUserData(f"the agent config {config.path}: {where}: {first['msg']}") from None


def write_files(plan: BootPlan) -> None:
    """Write the plan's files, each with its permissions, making their folders as cloud-init."""
    for file in plan.files:
        # 0755 as cloud-init makes them: the server's postgres user may have to pass.
        file.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Whole or not at all: in the lab the controller reads the same files (the
        # spare's agent secret), and a file truncated before it is written reads empty.
        replace_file(file.path, file.content, file.mode)


def boot(plan: BootPlan, root: Path, server: dict[str, Any],
         primary_ip: dict[str, Any] | None) -> ProcessRecord:
    """Write the plan's files, start its agent and record it; returns the agent's record."""
    write_files(plan)
    paths = LabPaths(root)
    paths.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"agent@{plan.site}"
    argv = [sys.executable, "-m", "failover.agent", "--config", str(plan.config_path)]
    agent = spawn(name, argv, log=paths.log(name), env=refapp.clean_env())
    try:
        _save(root, Booted(server, primary_ip, agent, plan.state_dir))
    except BaseException:
        stop(agent)  # never leave a process that nothing records
        raise
    return agent


def _record_file(root: Path, server_name: str) -> Path:
    return root / SERVERS_DIR / f"{server_name}.json"


def _save(root: Path, booted: Booted) -> None:
    path = _record_file(root, booted.server["name"])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(booted.to_dict(), indent=2) + "\n")
    tmp.replace(path)  # atomic: `lab down` reads the old record or the new one


def records(root: Path) -> list[Booted]:
    """Every server booted under ``root`` and not deleted since, by name."""
    return [Booted.from_dict(json.loads(path.read_text()))
            for path in sorted((root / SERVERS_DIR).glob("*.json"))]


def shut_down(root: Path, server_name: str) -> str:
    """Stop a booted server's agent by its recorded PID and forget it; returns how it ended.

    The agent stops its own children; the record stays when it could not be stopped,
    so that ``lab down`` tries again.
    """
    path = _record_file(root, server_name)
    try:
        booted = Booted.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return "nothing booted"
    outcome = stop(booted.agent)
    if is_alive(booted.agent):
        raise RuntimeError(f"{booted.agent.name} (pid {booted.agent.pid}) did not stop")
    path.unlink()
    return outcome


def processes(root: Path, parent: str) -> list[ProcessRecord]:
    """The booted agents (children of ``parent``, the fake) and each one's own children."""
    found = []
    for booted in records(root):
        found.append(booted.agent.child_of(parent))
        found += [r.child_of(booted.agent.name) for r in read_children(booted.state_dir)]
    return found
