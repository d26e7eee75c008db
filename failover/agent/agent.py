"""The agent: its children, its lease and the operations the engine asks of it.

Every operation is journaled under the id its sender chose before it runs;
the same id again returns the first result (or the progress of the running
one) and never runs it twice. Operations run on a thread each; one lock
keeps two that touch the database server from running at once. An agent
that restarts resumes a rejoin or restore it was doing (each finds what is
done) and reports any other interrupted operation as failed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg

from failover import logs
from failover.agent.backup import Backups, PgBackRest, archive_settings
from failover.agent.config import AgentConfig
from failover.agent.failsafe import WITHHOLD_KIND, not_kept
from failover.agent.journal import AgentJournal, Operation
from failover.agent.lease import Lease
from failover.agent.pghost import PgHost
from failover.agent.protocol import agent_secret
from failover.agent.rejoining import Rejoining
from failover.agent.restore import Restorer
from failover.agent.supervisor import Child, Supervisor
from failover.data import fencing, postgres
from failover.data.hba import is_fence
from failover.exceptions import FailoverError
from failover.processes import send

log = logging.getLogger("failover.agent")
VERSION = "1"
WATCH_LEASE_EVERY = 0.1  # seconds: a lapsed lease is acted on within this (plus the fence)
RESUMABLE = frozenset({"rejoin", "restore"})
QUICK = frozenset({"lease", "lease/release", "fence", "unfence", "backup/info", WITHHOLD_KIND})
UNLOCKED = frozenset({"backup", "backup/info", WITHHOLD_KIND})
DATA_SIZE_EVERY = 60.0
# "yes" from the moment a rejoin starts rewriting the data dir until the server has
# started on the new files: a rejoin that finds it set copies afresh, never rewinds.
Body = dict[str, Any]


class OperationConflict(FailoverError):
    """An operation id sent again with another kind or body."""


class BadRequest(FailoverError):
    """A request whose body is not what its operation takes."""


def _event(event: str, **fields: object) -> None:
    logs.log_event(log, event, **fields)


class Agent(Rejoining):
    """One site's agent (the HTTP server in ``server`` calls into this)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.secret = agent_secret(config.secret_file)
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config.state_dir.chmod(0o700)
        self.journal = AgentJournal(config.state_dir / "agent.sqlite")
        spec = config.postgres
        if config.backup is not None:  # every WAL segment goes to the repositories
            spec = spec.model_copy(update={"settings": {**archive_settings(config.backup),
                                                        **spec.settings}})
        self.host = PgHost(spec, lock_file=config.state_dir / "rewrite.lock")
        self.backups = None if config.backup is None else Backups(
            PgBackRest(config.backup, self.host, str(config.provider)), self.unfenced_primary,
            _event)
        self.replicator = None
        if config.objects is not None:  # boto3 is loaded only by an agent that copies objects
            from failover.data.replicate import Replicator

            self.replicator = Replicator(config.objects.bucket,
                                         config.objects.used(str(config.provider)))
        self.lease = Lease(self.journal, config.state_dir)
        self._db_lock = threading.RLock()  # one operation on the server at a time
        self._size, self._sized_at = 0, -DATA_SIZE_EVERY
        # A renewal that comes while the lease's fence is under way waits for it and undoes
        # it: read alone, "self_fenced" would say no until the fence ended.
        self._lease_fence = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.supervisor = Supervisor(config.state_dir, self._children(),
                                     lambda kind, wanted: self.journal.set(
                                         f"wanted.{kind}", "yes" if wanted else "no"))
        self.restores = Restorer(self.backups, self.supervisor, self.journal,
                                 self._drop_copied_fence)
        self.cluster = None
        if config.cluster is not None:  # etcd's and the peers' clients only when used
            from failover.agent.cluster import AgentCluster
            self.cluster = AgentCluster(self, config.cluster)

    # -- children --------------------------------------------------------------------

    def _children(self) -> list[Child]:
        site, spec = self.config.site, self.config.postgres
        owner = self.host.owner
        children = [Child(f"postgres@{site}", self.host.argv(), spec.log, user=spec.os_user,
                          group=None if owner is None else owner[1],
                          stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown
                          before_start=self._before_postgres,
                          wanted=self.journal.setting("wanted.postgres", "yes") == "yes")]
        if self.config.app is not None:
            app = self.config.app
            env = {**app.env, "FAILOVER_LEASE_FILE": str(self.lease.file)}
            children.append(Child(f"app@{site}", list(app.argv), app.log,
                                  env={**os.environ, **env},
                                  wanted=self.journal.setting("wanted.app", "yes") == "yes"))
        return children

    def _before_postgres(self) -> None:
        """A server that starts while its lease has lapsed starts fenced."""
        if (self.lease.lapsed() and not self.host.is_standby_dir()
                and self.host.fence_on_disk(f"{self.config.site}: lease lapsed before a start")):
            self.journal.set("self_fenced", "yes")
            _event("agent.fence", site=self.config.site, why="lease lapsed", at="start")

    def begin(self) -> None:
        """Start the children and the lease's watch; resume what a restart interrupted."""
        if self.backups is not None:
            self.backups.tool.write_configs()  # archive_command needs them from the start
        if self.cluster is not None:  # a lease regained at once: the server starts unfenced
            self.cluster.lease.step()
            self._thread(partial(self.cluster.lease.loop, self._stopping), "agent-cluster")
        self.supervisor.begin()
        self._thread(self._watch_lease, "agent-lease")
        if self.backups is not None:
            self._thread(partial(self.backups.loop, self._stopping), "agent-backups")
        if self.replicator is not None and self.config.objects is not None:
            self._thread(partial(self.replicator.loop, self._stopping,
                                 self.config.objects.interval, self.unfenced_primary),
                         "agent-objects")
        for op in self.journal.running():
            if op.kind in RESUMABLE:
                _event("agent.resume", op=op.op, kind=op.kind)
                self._thread(partial(self._run, op), f"agent-op-{op.op[:8]}")
            else:
                self.journal.finish(op.op, None, "interrupted: the agent restarted while it "
                                    "ran; look at status, then send it again with a new id")

    def shutdown(self) -> None:
        """Stop the lease's watch and every child (the agent is exiting)."""
        self._stopping.set()
        self.supervisor.shutdown()
        if self.replicator is not None:
            self.replicator.close()
        if self.cluster is not None:
            self.cluster.close()
        self.journal.close()

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- the lease -----------------------------------------------------------------------

    def _watch_lease(self) -> None:
        while not self._stopping.wait(WATCH_LEASE_EVERY):
            # "yes": fenced for this lapse; "other": nothing of ours to do for it (a
            # standby, or fenced by someone else). Each once: a fence writes WAL.
            if self.lease.lapsed() and self.journal.setting("self_fenced") not in ("yes",
                                                                                   "other"):
                try:
                    with self._lease_fence:
                        if self.lease.lapsed():  # not renewed while we waited for the lock
                            self._fence_for_lease()
                except Exception as exc:  # down, starting: it starts fenced, or next look
                    _event("agent.fence.failed", site=self.config.site,
                           error=" ".join(str(exc).split())[:200])

    def _fence_for_lease(self) -> None:
        with self._db_lock, self.host.connect(timeout=1) as conn:
            if postgres.server_state(conn).role != "primary":
                self.journal.set("self_fenced", "other")  # nothing to fence: a standby
                return
            done = fencing.fence(conn, self.config.postgres.superuser,
                                 f"{self.config.site}: its lease lapsed", timeout=5)
        self.journal.set("self_fenced", "yes" if not done.already else "other")
        _event("agent.fence", site=self.config.site, why="lease lapsed",
               terminated=done.terminated, already=done.already)

    def renew_lease(self, body: Body) -> Body:
        """Hold the lease until ``expires_at``; a primary that fenced itself for want of it
        is unfenced (the controller still holds this site to be the primary)."""
        expires_at = body.get("expires_at")
        if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            raise BadRequest("expires_at must be Unix seconds")
        view = self.lease.renew(float(expires_at))
        regained = False
        with self._lease_fence:
            fenced = self.journal.setting("self_fenced") == "yes"
            # Lifted only when the controller asks: it does once it has seen that no
            # other site answers as an unfenced primary (a renewal alone could come
            # from a controller that has not yet learnt of a promote).
            if fenced and body.get("unfence") is True:
                with self._db_lock, self.host.connect(timeout=3) as conn:
                    fencing.unfence(conn, self.host.unfenced_hba(), timeout=10)
                regained = True
                _event("agent.unfence", site=self.config.site, why="lease renewed")
                fenced = False
            if not fenced and self.journal.setting("self_fenced") is not None:
                self.journal.set("self_fenced", None)  # a later lapse is acted on afresh
        return {**view.to_dict(), "regained": regained, "self_fenced": fenced}

    def release_lease(self, _body: Body) -> Body:
        """Leases off for this site."""
        with self._lease_fence:
            # A fence of its own stays, and so does the note of it: only a renewal
            # that asks lifts it (a released lease may be an old primary's).
            self.lease.release()
        return self.lease.view().to_dict()

    # -- operations ------------------------------------------------------------------------

    def submit(self, op: str, kind: str, body: Body) -> Operation:
        """Run an operation once under ``op``; returns its record (maybe still running)."""
        handler = self.handlers().get(kind)
        if handler is None:
            raise BadRequest(f"no operation {kind!r}")
        record, new = self.journal.begin(op, kind, body)
        if not new:
            if (record.kind, record.params) != (kind, body):
                raise OperationConflict(
                    f"operation id {op} was used for {record.kind} with other parameters; "
                    "a new operation needs a new id")
            return record
        if kind in QUICK:  # answer at once
            self._run(record)
        else:
            self._thread(partial(self._run, record), f"agent-op-{op[:8]}")
        return self.journal.get(op) or record

    def _run(self, record: Operation) -> None:
        handler = self.handlers()[record.kind]
        t0 = time.monotonic()
        try:
            if record.kind.startswith("lease"):
                result = handler(record.params)
            elif record.kind in UNLOCKED:
                result = handler(record.params, say=partial(self.journal.progress, record.op))
            else:
                result = self._locked(handler, record)
        except Exception as exc:  # any failure ends the operation, with one line that says why
            error = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, FailoverError | ValueError | psycopg.Error | OSError):
                error = f"{type(exc).__name__}: {error}"
            self.journal.finish(record.op, None, error)
            _event("agent.op", op=record.op, kind=record.kind, outcome="failed", error=error,
                   seconds=f"{time.monotonic() - t0:.2f}")
            return
        self.journal.finish(record.op, result, None)
        _event("agent.op", op=record.op, kind=record.kind, outcome="ok",
               seconds=f"{time.monotonic() - t0:.2f}")

    def _locked(self, handler: Callable[..., Body], record: Operation) -> Body:
        mine = {"op": record.op} if record.kind == "restore" else {}  # its own leftovers
        with self._db_lock:
            return handler(record.params, say=partial(self.journal.progress, record.op), **mine)

    def handlers(self) -> dict[str, Callable[..., Body]]:
        """Every operation by its kind (the API's path below /v1/)."""
        return {
            "lease": self.renew_lease, "lease/release": self.release_lease,
            "fence": self.fence, "unfence": self.unfence, "rejoin": self.rejoin,
            "database/start": self.start_database, "database/stop": self.stop_database,
            "app/start": self._start_app, "app/stop": self._stop_app, "restore": self.restores.run,
            # pgBackRest's: never under the server's lock, so that a fence never waits.
            "backup": partial(self._backups, "backup"),
            "backup/info": partial(self._backups, "report"),
            **({WITHHOLD_KIND: not_kept} if self.cluster is None else self.cluster.handlers()),
        }

    def _backups(self, method: str, body: Body, say: Callable[[str], None]) -> Body:
        if self.backups is None:
            raise BadRequest("this agent's config has no backup section")
        handler: Callable[[Body, Callable[[str], None]], Body] = getattr(self.backups, method)
        return handler(body, say)

    def unfenced_primary(self) -> bool:
        """Whether the local server is a primary that takes writes (not fenced, not a standby)."""
        hba = self.host.hba()
        if hba is None or is_fence(hba):
            return False
        try:
            with self.host.connect(timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.Error:
            return False
        return row is not None and not row[0]

    def fence(self, body: Body, say: Callable[[str], None]) -> Body:
        """Fence the local primary (the engine's fence, over a local connection)."""
        note = str(body.get("note") or "fenced through the agent")[:200]
        with self.host.connect(timeout=3) as conn:
            done = fencing.fence(conn, self.config.postgres.superuser, note, timeout=20)
        return {"fenced": True, "lsn": done.lsn, "original_hba": done.original_hba,
                "terminated": done.terminated, "already": done.already}

    def unfence(self, body: Body, say: Callable[[str], None]) -> Body:
        """Write back the original pg_hba.conf (given, or the fence's sidecar)."""
        original = body.get("original_hba")
        if original is None:
            original = self.host.unfenced_hba()
        if not isinstance(original, str):
            raise BadRequest("original_hba must be text")
        with self.host.connect(timeout=3) as conn:
            fencing.unfence(conn, original, timeout=20)
        self.journal.set("self_fenced", None)
        return {"fenced": False}

    def start_database(self, body: Body, say: Callable[[str], None]) -> Body:
        """Start the server (if it is not running) and wait until it accepts connections."""
        timeout = float(body.get("timeout", 60))
        record = self.supervisor.start("postgres")
        say(f"started (pid {record.pid}); waiting until it accepts connections")
        self.host.wait_ready(timeout=timeout)
        return {"pid": record.pid}

    def stop_database(self, body: Body, say: Callable[[str], None]) -> Body:
        """Stop the server: fast shutdown, or ``mode: kill`` (SIGKILL, held down: a crash)."""
        mode = body.get("mode", "fast")
        if mode not in ("fast", "kill"):
            raise BadRequest("mode must be fast or kill")
        return {"outcome": self.supervisor.stop("postgres", kill=mode == "kill")}

    def _start_app(self, body: Body, say: Callable[[str], None]) -> Body:
        return {"pid": self.supervisor.start("app").pid}

    def _stop_app(self, body: Body, say: Callable[[str], None]) -> Body:
        return {"outcome": self.supervisor.stop("app")}

    def _data_bytes(self) -> int:
        """The data dir's size, walked at most once a minute (status is asked often)."""
        now = time.monotonic()
        if now - self._sized_at > DATA_SIZE_EVERY:
            self._size, self._sized_at = self.host.data_bytes(), now
        return self._size

    def _reload(self) -> None:
        record = self.supervisor.child("postgres").record
        if record is not None:
            send(record, signal.SIGHUP)  # pg_hba.conf is re-read on reload

    # -- status --------------------------------------------------------------------------

    def status(self) -> Body:
        """What this host's server, app and lease are now."""
        out: Body = {"site": self.config.site, "role": "down", "timeline": None, "lsn": None,
                     "lag_bytes": None, "fenced": None,
                     "children": {c.name.split("@")[0]: c.state()
                                  for c in self.supervisor.children.values()},
                     "lease": self.lease.view().to_dict(),
                     "versions": {"agent": VERSION}}
        if self.cluster is not None:
            out["cluster"] = self.cluster.status()
        if self.replicator is not None:
            out["objects"] = {"targets": {name: state.to_dict() for name, state
                                          in self.replicator.status().items()}}
        hba = self.host.hba()
        out["fenced"] = None if hba is None else is_fence(hba)
        try:
            with self.host.connect(timeout=1) as conn:
                state = postgres.server_state(conn)
                row = conn.execute(
                    "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM "
                    "pg_stat_wal_receiver) ELSE ('x' || substr(pg_walfile_name("
                    "pg_current_wal_lsn()), 1, 8))::bit(32)::int END, "
                    "CASE WHEN pg_is_in_recovery() THEN pg_wal_lsn_diff("
                    "pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END, "
                    "version()").fetchone()
        except psycopg.Error as exc:
            out["error"] = " ".join(str(exc).split())[:200]
            return out
        assert row is not None
        out.update(role=state.role, lsn=state.lsn, timeline=row[0], lag_bytes=row[1])
        out["versions"]["postgres"] = row[2]
        out["data_bytes"] = self._data_bytes()
        return out
