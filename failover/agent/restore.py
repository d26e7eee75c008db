"""Restore: give a host with no data its PostgreSQL from a backup and the archived WAL.

A site rebuilt at a provider that had nothing gets its server from one
repository (any configured one: after a total loss the only one left may be
at the rebuilt site's own provider): the newest backup, or the newest that
ended before ``target_time``, then the WAL archived after it, which the
server replays itself through the ``restore_command`` pgBackRest writes into
postgresql.auto.conf. As a primary it replays to the end of the archive (or
to the target) and promotes; as a standby it catches up from the archive and
then streams from its primary.

A restore never overwrites a site's data: a data dir that holds files is
refused, unless the journal says they are a restore cut short that no server
ever started on; then pgBackRest's ``--delta`` finishes it. An agent that
restarts in the middle resumes the operation under its id.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from failover.agent import rejoin as rj
from failover.agent.backup import Backups, PgBackRest, Repo
from failover.agent.journal import AgentJournal
from failover.agent.pghost import PROVIDER, PgHost, _setting_name
from failover.agent.supervisor import Child, Supervisor
from failover.data.postgres import PgEndpoint
from failover.exceptions import ProviderError
from failover.secretfiles import write_private
from failover.waiting import wait_for

ROLES = ("primary", "standby")
FIELDS = frozenset({"repository", "target_time", "as", "primary", "timeout"})
# The journal's note (JSON) of a restore that owns the data dir's files: "restoring" while
# pgBackRest writes them (a later restore may finish them with --delta), "started" from
# just before the server starts on them (they may have taken writes: only the operation
# that wrote them goes on).
RESTORING = "restore.files"
PROGRESS_EVERY = 1.0  # seconds between progress notes while pgBackRest writes
MIB = 1024 * 1024
# What a restored primary must not keep from the site it was backed up at: it has no
# standby yet, and commits that waited for one would never end.
_PRIMARY_DROPS = frozenset({"synchronous_standby_names", "synchronous_commit",
                            "primary_conninfo"})
_POSITION = """SELECT CASE WHEN pg_is_in_recovery()
    THEN (SELECT received_tli FROM pg_stat_wal_receiver)
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
   ELSE pg_current_wal_lsn() END)::text"""


@dataclass(frozen=True)
class RestoreRequest:
    """A restore's parameters, checked."""

    repository: str
    target_time: datetime | None  # None: to the end of the archive
    role: str  # primary or standby
    primary: tuple[str, int] | None  # a standby's primary (host, port)
    timeout: float | None  # None: the backup section's


def restore_params(body: dict[str, Any],
                   now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RestoreRequest:
    """The request in a ``restore`` body, checked; ValueError says what is wrong."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ValueError(f"a restore takes no {', '.join(unknown)} (it takes "
                         f"{', '.join(sorted(FIELDS))})")
    repository = body.get("repository")
    if not isinstance(repository, str) or not repository:
        raise ValueError("repository must be the name of a configured repository")
    role = body.get("as")
    if role not in ROLES:
        raise ValueError('as must be "primary" or "standby"')
    target = _target_time(body.get("target_time"), now())
    given, primary = body.get("primary"), None
    if role == "standby":
        if target is not None:
            raise ValueError("target_time is for a primary: a standby replays all its "
                             "primary writes")
        if not isinstance(given, dict):
            raise ValueError("a standby needs primary: {host, port}")
        try:
            host, port, _ = rj.rejoin_params({"primary_host": given.get("host"),
                                              "primary_port": given.get("port")})
        except ValueError as exc:
            raise ValueError(f"primary: {str(exc).removeprefix('primary_')}") from None
        primary = (host, port)
    elif given is not None:
        raise ValueError("primary is for a standby: a restored primary follows no one")
    timeout = body.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or timeout <= 0):
        raise ValueError("timeout must be a number of seconds")
    return RestoreRequest(repository, target, str(role), primary,
                          None if timeout is None else float(timeout))


def _target_time(value: object, now: datetime) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("target_time must be ISO-8601 text, or null for the latest")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"target_time {value!r} is not ISO-8601 "
                         "(e.g. 2026-11-29T16:40:00+00:00)") from None
    if at.tzinfo is None:
        raise ValueError(f"target_time {value!r} needs an offset (+00:00, Z): without one "
                         "it names another instant at every host")
    if at > now:
        raise ValueError(f"target_time {value} is in the future: recovery would end "
                         "before it")
    return at


def pick_backup(info: dict[str, Any], target: datetime | None) -> dict[str, Any] | None:
    """The backup to start from: the newest, or the newest that ended before ``target``."""
    def stopped(backup: dict[str, Any]) -> int:
        return int(backup.get("timestamp", {}).get("stop", 0))

    backups: list[dict[str, Any]] = [b for b in info.get("backup", []) if b.get("label")]
    if target is not None:
        # Its stop time is in whole seconds, rounded down: a second more is surely past
        # the point where its files are consistent, and recovery cannot stop before that.
        backups = [b for b in backups if stopped(b) + 1 <= target.timestamp()]
    return max(backups, key=stopped) if backups else None


def restore_args(request: RestoreRequest, label: str, *, delta: bool) -> list[str]:
    """pgBackRest's arguments for the restore (after ``--config`` and ``--stanza``)."""
    args = [f"--set={label}"]
    if delta:
        args.append("--delta")  # finish a restore cut short: the files already right stay
    if request.role == "standby":
        args.append("--type=standby")
    elif request.target_time is not None:
        at = request.target_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        args += ["--type=time", f"--target={at}", "--target-action=promote"]
    # else the default type: to the end of the archive, where PostgreSQL promotes itself
    return [*args, "restore"]


def restore_progress(label: str, repo: str, done: int, total: int, seconds: float) -> str:
    """A progress note: bytes written of the backup's size, and the time left at this pace."""
    done = min(done, total)
    text = f"restoring backup {label} from {repo}: {done / MIB:.1f} of {total / MIB:.1f} MiB"
    if 0 < done < total and seconds > 0:
        text += f", about {(total - done) * seconds / done:.0f} s left"
    return text


class Restorer:
    """The agent's ``restore`` operation (run under its database lock)."""

    def __init__(self, backups: Backups | None, supervisor: Supervisor, journal: AgentJournal,
                 drop_copied_fence: Callable[[], None]) -> None:
        self.tool: PgBackRest | None = None if backups is None else backups.tool
        self.log: Callable[..., None] = (lambda *a, **k: None) if backups is None \
            else backups.log
        self.supervisor = supervisor
        self.journal = journal
        self.drop_copied_fence = drop_copied_fence  # rejoin's: a backup taken while fenced

    def run(self, body: dict[str, Any], say: Callable[[str], None], op: str) -> dict[str, Any]:
        """Restore the empty data dir from ``repository``; start the server ``as`` asked."""
        if self.tool is None:
            raise ProviderError("this agent's config has no backup section: no repository "
                                "to restore from", provider=PROVIDER, code="no-backups")
        request = restore_params(body)
        repo = self.tool.repository(request.repository)
        deadline = time.monotonic() + (request.timeout or self.tool.spec.timeout)

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        host = self.tool.host
        primary, timeline = None, 0
        if request.primary is not None:
            if request.primary == (host.spec.address, host.spec.port):
                raise ProviderError("cannot make this server a standby of itself",
                                    provider=PROVIDER, code="same-site")
            primary = PgEndpoint(*request.primary, host.spec.superuser, "postgres",
                                 passfile=str(host.spec.passfile))
            timeline = rj.primary_timeline(primary)  # refused before anything changes
        note = self._note()
        if note is not None and note["op"] == op and note["stage"] == "started":
            say("the server was started on the restored files; waiting for it")
        else:
            note = self._restore(op, request, repo, note, say, left)
        if primary is None:
            say("replaying WAL to " + ("the end of the archive" if request.target_time is None
                                       else request.target_time.isoformat()))
        else:
            say(f"replaying WAL from the archive, then streaming from {primary.host}:"
                f"{primary.port}")
        child = self.supervisor.child("postgres")
        exits, t0 = child.last_exit, time.monotonic()
        self.supervisor.start("postgres")
        wait_for(lambda: self._recovered(child, exits, primary, timeline), timeout=left(),
                 what="postgres to " + ("end its recovery" if primary is None
                                        else "stream from its primary"),
                 retry_on=psycopg.OperationalError)  # refused, or still starting up
        recovery = round(time.monotonic() - t0, 2)
        with host.connect(timeout=3) as conn:
            row = conn.execute(_POSITION).fetchone()
        assert row is not None
        self.journal.set(RESTORING, None)  # the files are the server's now
        self.log("agent.restore", repo=repo.name, backup=note["backup"], role=request.role,
                 restore=note["restore_seconds"], recovery=recovery, timeline=row[0])
        return {"repository": repo.name, "backup": note["backup"],
                "backup_bytes": note["backup_bytes"],
                "target_time": None if request.target_time is None
                else request.target_time.isoformat(),
                "timeline": row[0], "lsn": row[1],
                "seconds": {"restore": note["restore_seconds"], "recovery": recovery}}

    def _restore(self, op: str, request: RestoreRequest, repo: Repo,
                 note: dict[str, Any] | None, say: Callable[[str], None],
                 left: Callable[[], float]) -> dict[str, Any]:
        """Stop the server and have pgBackRest write the files; returns the journal's note."""
        assert self.tool is not None
        host = self.tool.host
        data_dir = host.spec.data_dir
        leftover = data_dir.is_dir() and any(data_dir.iterdir())
        # A server running on them makes them a site's data, whatever an old note says.
        if leftover and (note is None or note["stage"] != "restoring"
                         or self.supervisor.child("postgres").running()):
            raise ProviderError(
                f"{data_dir} holds data: a restore never overwrites a site's files (if this "
                "host is to be rebuilt, stop its server and move them aside first)",
                provider=PROVIDER, code="has-data")
        self.tool.write_configs()
        backup = pick_backup(self.tool.info(repo), request.target_time)
        if backup is None:
            raise ProviderError(
                f"repository {repo.name} holds no backup" + (
                    "" if request.target_time is None
                    else f" that ended before {request.target_time.isoformat()}"),
                provider=PROVIDER, code="no-backup")
        label = str(backup["label"])
        size = int(backup.get("info", {}).get("size", 0))
        say("stopping postgres")  # and it stays down: nothing starts on half-written files
        self.supervisor.stop("postgres", timeout=min(30.0, left()))
        _own_parent(host)
        if leftover and note is not None:
            say(f"the data dir holds a restore cut short (operation {note['op']}): "
                "finishing it")
            _drop_unmarked(data_dir)
        note = {"op": op, "stage": "restoring", "repository": repo.name, "backup": label,
                "backup_bytes": size}
        self._keep(note)
        with host.rewriting(timeout=left()):  # waits for a killed agent's pgBackRest
            t0 = time.monotonic()
            self._pgbackrest(repo, restore_args(request, label, delta=leftover), size, say,
                             left)
            note["restore_seconds"] = round(time.monotonic() - t0, 2)
        if request.primary is not None:
            host.configure_standby(*request.primary)
        else:
            _drop_settings(host, _PRIMARY_DROPS)
        self.drop_copied_fence()
        note["stage"] = "started"
        self._keep(note)  # before the start: from then on the files may take writes
        return note

    def _pgbackrest(self, repo: Repo, args: list[str], size: int, say: Callable[[str], None],
                    left: Callable[[], float]) -> None:
        """Run the restore, noting its progress (the data dir's bytes) every second."""
        assert self.tool is not None
        tool, label = self.tool, args[0].removeprefix("--set=")
        say(f"restoring backup {label} from {repo.name}")
        t0 = time.monotonic()
        with ThreadPoolExecutor(1, thread_name_prefix="agent-restore") as pool:
            done = pool.submit(tool.run, tool.repo_conf(repo), *args, timeout=left())
            while not wait([done], timeout=PROGRESS_EVERY).done:
                say(restore_progress(label, repo.name, tool.host.data_bytes(), size,
                                     time.monotonic() - t0))
            done.result()  # its error, if it failed

    def _recovered(self, child: Child, exits: str, primary: PgEndpoint | None,
                   timeline: int) -> bool:
        """Whether the server is done: a primary out of recovery, a standby streaming."""
        assert self.tool is not None
        if child.last_exit != exits:  # it died: its next start would fail the same way
            self.supervisor.stop("postgres")
            log = self.tool.host.spec.log
            raise ProviderError(
                f"postgres exited while it recovered ({last_fatal(log) or f'see {log}'}); "
                "the restored files stay (move them aside to restore again)",
                provider=PROVIDER, code="recovery-failed")
        if primary is not None:
            return rj.following(self.tool.host, primary, timeline)
        with self.tool.host.connect(timeout=1) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return row is not None and not row[0]

    def _note(self) -> dict[str, Any] | None:
        text = self.journal.setting(RESTORING)
        return None if text is None else dict(json.loads(text))

    def _keep(self, note: dict[str, Any]) -> None:
        self.journal.set(RESTORING, json.dumps(note))


def _own_parent(host: PgHost) -> None:
    """The data dir's parent (and the data dir, if there) belong to the server's user:
    pgBackRest runs as that user and makes the data dir itself."""
    data_dir = host.spec.data_dir
    data_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if host.owner is not None:
        for path in (data_dir.parent, data_dir):
            if path.exists():
                os.chown(path, *host.owner)


def _drop_unmarked(data_dir: Path) -> None:
    """Empty a data dir of a restore cut short before pgBackRest marked it as its own.

    ``--delta`` works only where PG_VERSION or pgBackRest's backup.manifest says
    the dir is a data dir; without either it refuses any file there.
    """
    if (data_dir / "PG_VERSION").exists() or (data_dir / "backup.manifest").exists():
        return
    for path in data_dir.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _drop_settings(host: PgHost, names: frozenset[str]) -> None:
    """Remove the lines that set ``names`` from the restored postgresql.auto.conf."""
    auto = host.spec.data_dir / "postgresql.auto.conf"
    try:
        lines = auto.read_text().splitlines()
    except FileNotFoundError:
        return
    kept = [line for line in lines if _setting_name(line) not in names]
    if kept != lines:
        write_private(auto, "\n".join(kept) + "\n", host.owner)


def last_fatal(log: Path, tail: int = 65536) -> str | None:
    """The last FATAL or PANIC line near the end of a server's log, if any."""
    try:
        with open(log, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - tail))
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    found = [line for line in lines if "FATAL:" in line or "PANIC:" in line]
    return found[-1].strip()[:300] if found else None
