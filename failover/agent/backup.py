"""pgBackRest on the host: its configuration, WAL archiving, backups and what the repositories hold.

Only repositories at providers other than the host's own are used (a backup
that dies with the provider it should outlive is no backup), so the set
follows the primary: each host's agent renders its own. Two kinds of config
are written, each 0600 and owned by the server's OS user, since they hold
the storage keys:

- ``pgbackrest.conf`` names every repository: PostgreSQL's archive_command
  pushes each WAL segment to all of them, and ``info`` reads them all;
- ``repo-<name>.conf`` names one: stanza-create and backup run per
  repository, so one dark provider does not stop the backups at the others.
  One is written for every configured repository, the host's own
  provider's too: a restore may read any (after a total loss the only one
  left may be at the provider of the site being rebuilt).

pgBackRest reaches the server over TCP (PGHOST), as every tool of the agent
does: the lab's servers have no Unix socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from failover.agent.config import BackupSpec
from failover.agent.pghost import PROVIDER, PgHost, pgpass_password
from failover.aws import load_credentials
from failover.exceptions import ProviderError
from failover.secretfiles import write_private
from failover.stores import RepositoryConfig

PGBACKREST = "/usr/bin/pgbackrest"
BACKUP_TYPES = ("full", "diff", "incr")
WAL_SEGMENT = 16 * 1024 * 1024  # PostgreSQL's default; read from the server where it matters


def segment_end(name: str, segment_size: int = WAL_SEGMENT) -> int:
    """The LSN (as an integer) just past the end of WAL segment ``name``."""
    log, seg = int(name[8:16], 16), int(name[16:24], 16)
    return (log << 32) + (seg + 1) * segment_size


def _repo_lines(index: int, repo: RepositoryConfig, retention_full: int) -> list[str]:
    keys = load_credentials(repo.credentials_file)
    r = f"repo{index}"
    return [
        f"{r}-type=s3", f"{r}-s3-endpoint={repo.endpoint}", f"{r}-storage-port={repo.port}",
        f"{r}-s3-bucket={repo.bucket}", f"{r}-s3-region={repo.region}",
        f"{r}-s3-uri-style={repo.uri_style}", f"{r}-path={repo.path}",
        f"{r}-storage-verify-tls={'y' if repo.verify_tls else 'n'}",
        f"{r}-s3-key={keys['aws_access_key_id']}",
        f"{r}-s3-key-secret={keys['aws_secret_access_key']}",
        f"{r}-retention-full={retention_full}", f"{r}-bundle=y",
    ]


def main_conf(spec: BackupSpec) -> Path:
    """The config that names every repository the host uses (archive_command's)."""
    return spec.dir / "pgbackrest.conf"


def archive_settings(spec: BackupSpec) -> dict[str, str]:
    """The server's settings that archive every WAL segment to the repositories."""
    return {"archive_mode": "on", "archive_timeout": str(spec.archive_timeout),
            "archive_command": f"{PGBACKREST} --config={main_conf(spec)} "
                               f"--stanza={spec.stanza} archive-push %p"}


@dataclass(frozen=True)
class Repo:
    """A repository as this host uses it: its name and its key (repoN) in pgbackrest.conf
    (0 for one the host only restores from: pgbackrest.conf does not name it)."""

    name: str
    key: int
    spec: RepositoryConfig


class PgBackRest:
    """pgBackRest for the one PostgreSQL server of this host."""

    def __init__(self, spec: BackupSpec, host: PgHost, provider: str) -> None:
        self.spec = spec
        self.host = host
        self.repos = [Repo(name, i, repo) for i, (name, repo)
                      in enumerate(spec.used(provider).items(), start=1)]

    @property
    def conf(self) -> Path:
        """The config naming every repository this host uses."""
        return main_conf(self.spec)

    def repo_conf(self, repo: Repo) -> Path:
        """The config naming only ``repo`` (as repo1)."""
        return self.spec.dir / f"repo-{repo.name}.conf"

    def repository(self, name: str) -> Repo:
        """Any configured repository by name, used by this host or not (restores read any)."""
        used = {repo.name: repo for repo in self.repos}
        if name in used:
            return used[name]
        if name not in self.spec.repositories:
            raise ValueError(f"no repository {name!r}: the configured ones are "
                             f"{', '.join(sorted(self.spec.repositories))}")
        return Repo(name, 0, self.spec.repositories[name])

    # -- files -----------------------------------------------------------------------

    def _text(self, repos: list[tuple[int, RepositoryConfig]]) -> str:
        spec, d = self.spec, self.spec.dir
        lines = ["# written by failover agent: every start rewrites it", "[global]"]
        for index, repo in repos:
            lines += _repo_lines(index, repo, spec.retention_full)
        lines += [
            "archive-async=y", f"spool-path={d / 'spool'}", f"log-path={d / 'log'}",
            f"lock-path={d / 'lock'}", f"process-max={spec.process_max}",
            f"io-timeout={spec.io_timeout}", "compress-type=zst", "start-fast=y",
            f"archive-timeout={max(30, 2 * spec.archive_timeout)}",
            "log-level-file=info", "log-level-console=warn", "log-level-stderr=off",
            "", f"[{spec.stanza}]", f"pg1-path={self.host.spec.data_dir}",
            f"pg1-port={self.host.spec.port}", f"pg1-user={self.host.spec.superuser}",
        ]
        return "\n".join(lines) + "\n"

    def write_configs(self) -> None:
        """Write the configs and make pgBackRest's directories (the server's user owns them)."""
        owner = self.host.owner
        for path in (self.spec.dir, *(self.spec.dir / n for n in ("spool", "log", "lock"))):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if owner is not None:
                os.chown(path, *owner)
        self._replace(self.conf, self._text([(r.key, r.spec) for r in self.repos]))
        for name in self.spec.repositories:
            repo = self.repository(name)
            self._replace(self.repo_conf(repo), self._text([(1, repo.spec)]))

    def _replace(self, path: Path, text: str) -> None:
        """Write ``path`` whole or not at all, and only when it changes.

        A restored server's restore_command (archive-get) reads these files while
        they may be written: a half-written one would fail it, and PostgreSQL
        takes a failed archive-get for the end of the archive and promotes early.
        """
        try:
            if path.read_text() == text:
                return
        except FileNotFoundError:
            pass
        fresh = path.with_name(f".{path.name}.new")
        write_private(fresh, text, self.host.owner)
        os.replace(fresh, path)

    # -- commands --------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        pg = self.host.spec
        return {"PGHOST": pg.address, "PGPORT": str(pg.port), "PGUSER": pg.superuser,
                "PGPASSWORD": pgpass_password(pg.passfile, pg.superuser)}

    def run(self, conf: Path, *args: str, timeout: float, capture: bool = False) -> str:
        """Run one pgBackRest command as the server's user; its output (captured or logged)."""
        argv = [PGBACKREST, f"--config={conf}", f"--stanza={self.spec.stanza}", *args]
        if not capture:
            return self.host.run_tool(argv, self._env(), timeout)
        owner = self.host.owner
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                user=self.host.spec.os_user, group=None if owner is None else owner[1],
                extra_groups=None if owner is None else [],
                env={"PATH": "/usr/bin:/bin", **self._env()}, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ProviderError(f"pgbackrest {args[-1]} did not finish in {timeout:g}s",
                                provider=PROVIDER, code="TIMEOUT") from None
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
            raise ProviderError(f"pgbackrest {args[-1]} failed: {tail}", provider=PROVIDER,
                                code="tool-failed")
        return done.stdout

    def stanza_create(self, repo: Repo) -> None:
        """Create the stanza in ``repo`` (nothing to do when it is there, for this server)."""
        self.run(self.repo_conf(repo), "stanza-create", timeout=60 + self.spec.io_timeout)

    def backup(self, repo: Repo, kind: str) -> None:
        """Take a backup into ``repo`` (an incremental with no full before it becomes a full)."""
        if kind not in BACKUP_TYPES:
            raise ValueError(f"backup type must be one of {', '.join(BACKUP_TYPES)}, not {kind!r}")
        self.run(self.repo_conf(repo), "backup", f"--type={kind}", timeout=self.spec.timeout)

    def info(self, repo: Repo | None = None) -> dict[str, Any]:
        """``pgbackrest info`` for the stanza, as JSON: of every repository this host uses,
        or of ``repo`` alone (its key there is 1)."""
        conf = self.conf if repo is None else self.repo_conf(repo)
        data = json.loads(self.run(conf, "--output=json", "info", timeout=30,
                                   capture=True) or "[]")
        return dict(data[0]) if data else {}

    def wal_time(self, repo: Repo, archive_id: str, segment: str) -> float | None:
        """When ``segment`` reached ``repo`` (its object's time); None if not found."""
        listing = json.loads(self.run(
            self.repo_conf(repo), "--output=json", "repo-ls",
            f"archive/{self.spec.stanza}/{archive_id}/{segment[:16]}", timeout=30,
            capture=True) or "{}")
        times = [float(entry.get("time", 0)) for name, entry in listing.items()
                 if name.startswith(segment)]
        return max(times) if times else None


def repo_report(tool: PgBackRest, info: dict[str, Any], repo: Repo,
                current_lsn: int | None, segment_size: int,
                now: Callable[[], float] = time.time) -> dict[str, Any]:
    """One repository's backups and archive: the last full, the last WAL, its age, sizes."""
    backups = [b for b in info.get("backup", [])
               if b.get("database", {}).get("repo-key") == repo.key]
    status: dict[str, Any] = next(
        (r.get("status", {}) for r in info.get("repo", []) if r.get("key") == repo.key), {})
    fulls = [b for b in backups if b.get("type") == "full"]
    diffs = [b for b in backups if b.get("type") == "diff"]
    archives = [a for a in info.get("archive", [])
                if a.get("database", {}).get("repo-key") == repo.key and a.get("max")]
    out: dict[str, Any] = {
        "name": repo.name, "provider": repo.spec.provider, "key": repo.key,
        "status": status.get("message", "unknown"), "ok": status.get("code") == 0,
        "backups": len(backups),
        "last_full": _backup_view(fulls[-1]) if fulls else None,
        "last_diff": _backup_view(diffs[-1]) if diffs else None,
        "last_backup": _backup_view(backups[-1]) if backups else None,
        "backup_bytes": sum(int(b.get("info", {}).get("repository", {}).get("delta", 0))
                            for b in backups),
        "last_wal": None, "last_wal_age_seconds": None, "unarchived_bytes": None,
    }
    if archives:
        newest = max(archives, key=lambda a: (a["id"], a["max"]))
        out["last_wal"] = newest["max"]
        try:
            at = tool.wal_time(repo, newest["id"], newest["max"])
        except ProviderError as exc:
            out["error"] = str(exc)
            at = None
        if at is not None:
            out["last_wal_age_seconds"] = round(max(0.0, now() - at), 1)
        if current_lsn is not None:
            out["unarchived_bytes"] = max(0, current_lsn - segment_end(newest["max"], segment_size))
    return out


def _backup_view(backup: dict[str, Any]) -> dict[str, Any]:
    stamp = backup.get("timestamp", {})
    return {"label": backup.get("label"), "type": backup.get("type"),
            "started": stamp.get("start"), "stopped": stamp.get("stop"),
            "bytes": backup.get("info", {}).get("size"),
            "repository_bytes": backup.get("info", {}).get("repository", {}).get("size")}


class Backups:
    """The agent's side of backups: the first full one in each repository, and the operations.

    While the server is an unfenced primary, every repository this host uses
    gets the stanza and a full backup if it has none: a site made primary (by
    ``lab up``, a promotion or a rebuild) is backed up at once, and so is a
    repository that joins when the primary moves. What comes after (the
    incremental and differential backups) is the controller's schedule,
    through the ``backup`` operation.
    """

    def __init__(self, tool: PgBackRest, primary: Callable[[], bool], log: Callable[..., None]):
        self.tool = tool
        self.primary = primary
        self.log = log
        self.ready: set[str] = set()  # repositories with the stanza and a full backup
        # pgBackRest takes one backup per stanza and host at a time (its lock file): the
        # keeper's first full backup and the operation's wait for each other, not fail.
        self._one_at_a_time = threading.Lock()

    def loop(self, stop: threading.Event, every: float = 10.0, retry: float = 30.0) -> None:
        """Keep every used repository ready while the server is primary; until ``stop``."""
        wait = 0.0
        while not stop.wait(wait):
            try:
                if not self.primary():
                    self.ready.clear()  # a new term of office starts with a check
                    wait = every
                    continue
                missing = self.ensure()
                wait = retry if missing else every
            except Exception as exc:  # the loop outlives any one failure, and says so
                self.log("agent.backup", outcome="failed", error=" ".join(str(exc).split()))
                wait = retry

    def ensure(self) -> list[str]:
        """Give each used repository the stanza and a full backup; the names still without."""
        pending = [r for r in self.tool.repos if r.name not in self.ready]
        if not pending:
            return []
        with self._one_at_a_time:
            return self._ensure(pending)

    def _ensure(self, pending: list[Repo]) -> list[str]:
        self.tool.write_configs()
        fulls = self._fulls()
        missing = []
        for repo in pending:
            try:
                self.tool.stanza_create(repo)
                if repo.key not in fulls:
                    t0 = time.monotonic()
                    self.tool.backup(repo, "full")
                    self.log("agent.backup", repo=repo.name, type="full", outcome="ok",
                             why="none in the repository",
                             seconds=f"{time.monotonic() - t0:.1f}")
            except ProviderError as exc:
                self.log("agent.backup", repo=repo.name, outcome="failed", error=str(exc))
                missing.append(repo.name)
            else:
                self.ready.add(repo.name)
        return missing

    def _fulls(self) -> set[int]:
        try:
            info = self.tool.info()
        except ProviderError:
            return set()  # no stanza yet anywhere: every repository needs its first full
        return {b["database"]["repo-key"] for b in info.get("backup", [])
                if b.get("type") == "full" and "database" in b}

    def backup(self, body: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
        """The ``backup`` operation: a backup of ``type`` (incr by default) into each repository."""
        kind = str(body.get("type") or "incr")
        if kind not in BACKUP_TYPES:
            raise ValueError(f"type must be one of {', '.join(BACKUP_TYPES)}, not {kind!r}")
        if not self.primary():
            raise ProviderError("this server is no unfenced primary: back up the primary",
                                provider=PROVIDER, code="not-primary")
        if not self._one_at_a_time.acquire(blocking=False):
            say("waiting for the backup under way to end")
            self._one_at_a_time.acquire()
        try:
            return self._backup(kind, say)
        finally:
            self._one_at_a_time.release()

    def _backup(self, kind: str, say: Callable[[str], None]) -> dict[str, Any]:
        self.tool.write_configs()
        results: dict[str, str] = {}
        for repo in self.tool.repos:
            say(f"{kind} backup into {repo.name}")
            t0 = time.monotonic()
            try:
                self.tool.stanza_create(repo)
                self.tool.backup(repo, kind)
            except ProviderError as exc:
                results[repo.name] = str(exc)
            else:
                results[repo.name] = "ok"
                self.ready.add(repo.name)
                self.log("agent.backup", repo=repo.name, type=kind, outcome="ok",
                         seconds=f"{time.monotonic() - t0:.1f}")
        if all(r != "ok" for r in results.values()):
            raise ProviderError("no repository took the backup: " + "; ".join(
                f"{n}: {r}" for n, r in results.items()), provider=PROVIDER, code="backup-failed")
        return {"type": kind, "repositories": results}

    def report(self, body: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
        """The ``backup/info`` operation: each used repository's backups and archive."""
        current_lsn, segment_size = None, WAL_SEGMENT
        with contextlib.suppress(psycopg.Error), self.tool.host.connect(timeout=2) as conn:
            row = conn.execute(
                "SELECT CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn() "
                "- '0/0'::pg_lsn END, setting::bigint * 1024 * 1024 FROM pg_settings "
                "WHERE name = 'wal_segment_size'").fetchone()
            if row is not None:
                current_lsn = None if row[0] is None else int(row[0])
                segment_size = int(row[1])
        self.tool.write_configs()
        info = self.tool.info()
        return {"stanza": self.tool.spec.stanza,
                "repositories": [repo_report(self.tool, info, repo, current_lsn, segment_size)
                                 for repo in self.tool.repos]}
