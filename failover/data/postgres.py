"""PostgreSQL servers: what they say of themselves, and the data plane's moves.

The facts (role, position, replication) serve the lab's status and the
controller alike, so there is one way to ask a server who it is. The moves
(synchronous replication, fence, catch-up, promote) are what a failover does
to the databases; each is idempotent and bounded by a timeout.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from failover.exceptions import FatalError, StepFailed
from failover.waiting import WaitTimeout, wait_for

Role = Literal["primary", "standby"]
SSL_REQUEST_CODE = 80877103  # the protocol's SSLRequest: the server answers one byte, S or N
LIBPQ_MIN_TIMEOUT = 2.0  # libpq treats any connect_timeout under 2 s as 2 s


@dataclass(frozen=True)
class PgEndpoint:
    """Where and as whom to reach one PostgreSQL server (password via PGPASSFILE)."""

    host: str
    port: int = 5432
    user: str = "postgres"
    dbname: str = "postgres"
    passfile: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password
        return f"PgEndpoint({self.user}@{self.host}:{self.port}/{self.dbname})"

    def answers(self, timeout: float) -> str | None:
        """None when the server's postmaster answers within ``timeout``, else why not.

        Sends the protocol's SSLRequest and reads its one-byte reply: no login
        (the postmaster forks a child that answers it and exits). A server
        frozen or behind a dead network accepts the TCP connection (the kernel
        does) and then says nothing; libpq's own connect_timeout cannot tell
        that apart in under 2 seconds.
        """
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
                if sock.recv(1):
                    return None
                return f"{self.host}:{self.port} closed the connection without answering"
        except TimeoutError:
            return f"{self.host}:{self.port} did not answer within {timeout:g}s"
        except OSError as exc:
            return f"{self.host}:{self.port}: {exc.strerror or exc}"

    def connect(self, timeout: float = 3.0, **kwargs: Any) -> psycopg.Connection[Any]:
        """An autocommit connection with a connect timeout.

        libpq waits at least 2 s however small its connect_timeout. With a
        shorter ``timeout`` the postmaster is asked first (``answers``), so a
        server that does not answer fails within ``timeout``; one that answers
        and then stalls may still take libpq's 2 s.
        """
        if timeout < LIBPQ_MIN_TIMEOUT:
            why = self.answers(timeout)
            if why is not None:
                raise psycopg.OperationalError(f"connection to {self!r} failed: {why}")
        params: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname,
            "connect_timeout": max(2, math.ceil(timeout)), "autocommit": True,
            "application_name": "failover",
        }
        if self.passfile:
            params["passfile"] = self.passfile
        if self.password:
            params["password"] = self.password
        return psycopg.connect(**params, **kwargs)


@dataclass(frozen=True)
class ServerState:
    """What one server says of itself."""

    role: Role
    lsn: str  # current WAL position (primary) or last replayed (standby)


@dataclass(frozen=True)
class StandbyLag:
    """How far one streaming standby is behind, as its primary sees it."""

    name: str  # application_name, the standby's cluster_name
    state: str  # streaming, catchup, ...
    sync_state: str  # async, sync, quorum, potential
    lag_bytes: int
    lag_seconds: float


def server_state(conn: psycopg.Connection[Any]) -> ServerState:
    """The server's role and its WAL position."""
    row = conn.execute(
        "SELECT pg_is_in_recovery(), "
        "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
        "ELSE pg_current_wal_lsn() END::text"
    ).fetchone()
    assert row is not None
    return ServerState("standby" if row[0] else "primary", row[1] or "0/0")


def standby_lags(conn: psycopg.Connection[Any]) -> list[StandbyLag]:
    """Every standby streaming from this primary and its lag."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT application_name, state, sync_state, "
            "COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint AS lag_bytes, "
            "COALESCE(EXTRACT(EPOCH FROM replay_lag), 0)::float8 AS lag_seconds "
            "FROM pg_stat_replication ORDER BY application_name"
        ).fetchall()
    # replay_lag keeps its last value while the primary is idle; with nothing
    # left to replay the standby is not behind.
    return [
        StandbyLag(
            r["application_name"], r["state"], r["sync_state"], int(r["lag_bytes"]),
            float(r["lag_seconds"]) if r["lag_bytes"] else 0.0,
        )
        for r in rows
    ]


# --- Moves: synchronous replication, fence, catch-up, promote -------------
#
# Every move is idempotent (a retried step finds its work done and says so),
# bounded by a timeout, and fails with StepFailed and one sentence. They need
# an autocommit connection as a superuser: ALTER SYSTEM refuses to run inside
# a transaction block, and the fence reads and writes server files.

FENCE_MARKER = "# failover fence:"
UNFENCED_SUFFIX = ".failover-unfenced"  # sidecar beside the hba file: the true original
_RESTORE_POINT = "failover-fence"
_HBA_TYPES = frozenset({"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"})


@dataclass(frozen=True)
class FenceResult:
    """What fencing a primary did and where its WAL stood once it was fenced."""

    lsn: str  # end of the fence's restore point: everything written before the fence
    original_hba: str  # the pg_hba.conf to write back (unfence) or to rejoin with
    terminated: int  # client sessions ended by this call
    already: bool  # the server was fenced before this call


@dataclass(frozen=True)
class WalReceiver:
    """What a standby received and replayed: the facts for a "how far behind" judgement."""

    status: str | None  # streaming, waiting, ...; None: no WAL receiver runs
    sender_host: str | None
    sender_port: int | None
    received_lsn: str | None  # pg_last_wal_receive_lsn(): received and flushed
    latest_end_lsn: str | None  # the primary's WAL end, as of its last message
    latest_end_time: datetime | None
    last_msg_receipt_time: datetime | None
    replayed_lsn: str | None  # pg_last_wal_replay_lsn()
    last_replay_time: datetime | None  # commit time of the last replayed transaction
    unreplayed_bytes: int  # received but not yet replayed

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON-ready data (times in ISO 8601)."""
        return {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()
        }


def _where(conn: psycopg.Connection[Any]) -> str:
    return f"the PostgreSQL server at {conn.info.host}:{conn.info.port}"


@contextmanager
def _step(conn: psycopg.Connection[Any], what: str, timeout: float) -> Iterator[None]:
    """Bound every statement by ``timeout`` and turn failures into one StepFailed sentence."""
    if not conn.autocommit:
        raise FatalError(f"cannot {what}: the connection must be in autocommit mode")
    where = _where(conn)
    try:
        previous = _one(conn, "SELECT current_setting('statement_timeout')")
        _one(conn, "SELECT set_config('statement_timeout', %s, false)",
             (f"{max(1, int(timeout * 1000))}ms",))
        try:
            yield
        finally:
            if not conn.closed:
                with suppress(psycopg.Error):
                    conn.execute("SELECT set_config('statement_timeout', %s, false)", (previous,))
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepFailed(f"could not {what} at {where}: {reason}") from exc
    except WaitTimeout as exc:
        raise StepFailed(f"could not {what} at {where}: {exc}") from exc


def _one(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """The first column of the first row of a query."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _in_recovery(conn: psycopg.Connection[Any]) -> bool:
    return bool(_one(conn, "SELECT pg_is_in_recovery()"))


def _reload(conn: psycopg.Connection[Any], timeout: float) -> datetime:
    """Reload the configuration and wait until the postmaster has done it.

    pg_reload_conf() only signals the postmaster, which rereads its files and
    then signals every backend. Our own backend takes the signal before its
    next statement, so once our pg_conf_load_time() moves, the postmaster has
    reloaded; it forks no new backend before it has also reread pg_hba.conf.
    """
    before = _one(conn, "SELECT pg_conf_load_time()")
    if not _one(conn, "SELECT pg_reload_conf()"):
        raise StepFailed(f"{_where(conn)} did not accept the signal to reload its configuration")

    def reloaded() -> datetime | None:
        now: datetime = _one(conn, "SELECT pg_conf_load_time()")
        return now if now > before else None

    return wait_for(reloaded, timeout=timeout, what="the configuration to be reloaded")


def set_synchronous(conn: psycopg.Connection[Any], standby: str, *, timeout: float = 10.0) -> None:
    """Make commits wait until ``standby`` (its application_name) has applied them."""
    names = 'FIRST 1 ("' + standby.replace('"', '""') + '")'  # a quoted name, as syncrep parses it
    with _step(conn, f"make {standby} a synchronous standby", timeout):
        conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}")
                     .format(sql.Literal(names)))
        conn.execute("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
        _reload(conn, timeout)
        # A setting on the server's command line outranks ALTER SYSTEM: check it took.
        now = conn.execute("SELECT current_setting('synchronous_standby_names'), "
                           "current_setting('synchronous_commit')").fetchone()
        if now != (names, "remote_apply"):
            raise StepFailed(f"{_where(conn)} kept synchronous_standby_names={now and now[0]!r} "
                             "after ALTER SYSTEM: is it set on its command line?")


def set_asynchronous(conn: psycopg.Connection[Any], *, timeout: float = 10.0) -> None:
    """Let commits stop waiting for any standby (the defaults, also on a standby)."""
    # ALTER SYSTEM only rewrites postgresql.auto.conf (no WAL), so it works in
    # recovery too: a standby drops a synchronous setting it got from a base
    # backup before it is promoted and has no standby of its own.
    with _step(conn, "make commits asynchronous", timeout):
        conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("ALTER SYSTEM RESET synchronous_commit")
        _reload(conn, timeout)


def wait_synchronous(conn: psycopg.Connection[Any], standby: str, timeout: float) -> None:
    """Wait until the primary reports ``standby`` as its synchronous standby."""
    def sync() -> bool:
        state = conn.execute(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s", (standby,)
        ).fetchone()
        return state is not None and state[0] == "sync"

    with _step(conn, f"see {standby} as a synchronous standby", timeout):
        wait_for(sync, timeout=timeout, what=f"{standby} to be a synchronous standby")


def wait_replayed(conn: psycopg.Connection[Any], lsn: str, timeout: float) -> str:
    """On a standby, wait until it has replayed up to ``lsn``; returns the replayed LSN."""
    def replayed() -> str | None:
        row = conn.execute(
            "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= %s::pg_lsn",
            (lsn,),
        ).fetchone()
        assert row is not None
        return row[0] if row[1] else None

    with _step(conn, f"replay WAL up to {lsn}", timeout):
        if not _in_recovery(conn):
            # A standby promoted in an earlier attempt still knows what it replayed.
            done = replayed()
            if done is None:
                raise StepFailed(f"{_where(conn)} is a primary that never replayed up to {lsn}")
            return done
        return wait_for(replayed, timeout=timeout, what=f"the standby to replay up to {lsn}")


def promote(conn: psycopg.Connection[Any], timeout: float) -> bool:
    """Promote a standby; True if this call promoted it, False if it was already primary."""
    wait_seconds = max(1, math.ceil(timeout))
    with _step(conn, "promote", timeout + 5):
        if not _in_recovery(conn):
            return False
        try:
            done = _one(conn, "SELECT pg_promote(true, %s)", (wait_seconds,))
        except psycopg.errors.ObjectNotInPrerequisiteState:
            # "recovery is not in progress": another caller promoted it meanwhile.
            return False
        if not done:
            raise StepFailed(f"{_where(conn)} did not finish promoting within {wait_seconds}s")
        return True


def wal_receiver(conn: psycopg.Connection[Any]) -> WalReceiver | None:
    """On a standby, what it received from its primary and replayed; None on a primary."""
    with _step(conn, "read the WAL receiver", 10.0), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT pg_is_in_recovery() AS standby, r.status, r.sender_host, r.sender_port, "
            "pg_last_wal_receive_lsn()::text AS received_lsn, "
            "r.latest_end_lsn::text AS latest_end_lsn, r.latest_end_time, "
            "r.last_msg_receipt_time, pg_last_wal_replay_lsn()::text AS replayed_lsn, "
            "pg_last_xact_replay_timestamp() AS last_replay_time, "
            "COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)"
            "::bigint AS unreplayed_bytes "
            "FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true"
        ).fetchone()
    assert row is not None
    if not row.pop("standby"):
        return None
    # Once replay passes what was received (WAL from the archive), nothing is pending.
    row["unreplayed_bytes"] = max(0, int(row["unreplayed_bytes"]))
    return WalReceiver(**row)


# --- The fence -------------------------------------------------------------
#
# A read-only flag is no fence: any session may turn it off again. The fence
# rewrites pg_hba.conf so that only replication and one superuser may connect,
# makes the postmaster load it, and ends every session that came in before.


def _hba_fields(line: str) -> list[str]:
    """The whitespace-separated fields of one pg_hba.conf line, quotes kept, comment dropped."""
    fields: list[str] = []
    field, quoted = "", False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "#":
            break
        elif not quoted and ch.isspace():
            if field:
                fields.append(field)
            field = ""
            continue
        field += ch
    return [*fields, field] if field else fields


def _names_superuser(field: str, superuser: str) -> bool:
    """Whether a user field (``all``, ``a,"b c"``) lets ``superuser`` in."""
    items, item, quoted, was_quoted = [], "", False, False
    for ch in field + ",":
        if ch == '"':
            quoted, was_quoted = not quoted, True
        elif ch == "," and not quoted:
            items.append((item, was_quoted))
            item, was_quoted = "", False
        else:
            item += ch
    return any(name == superuser or (name == "all" and not q) for name, q in items)


def fenced_hba(original: str, superuser: str, note: str, sidecar: str) -> str:
    """The pg_hba.conf of a fenced server: the original's lines for replication and ``superuser``.

    First match wins in pg_hba.conf, so the kept lines stay in their order:
    replication lines verbatim, lines that let the superuser in narrowed to
    the superuser (their type, hostssl or hostnossl, address and method kept);
    everything else falls through to ``reject``.
    """
    if '"' in superuser:
        raise StepFailed(f"cannot fence for the role {superuser!r}: a quote in its name")
    one_line = " ".join(note.split())
    out = [f"{FENCE_MARKER} {one_line}", f"# the original is in {sidecar}; unfence restores it"]
    kept = False
    for line in original.splitlines():
        fields = _hba_fields(line)
        if len(fields) < 4 or fields[0] not in _HBA_TYPES:
            continue  # a comment, a blank or a line this PostgreSQL would not take
        if fields[1] == "replication":  # physical replication only; "replication" quoted is a db
            out.append(line)
        elif _names_superuser(fields[2], superuser):
            out.append(" ".join([fields[0], fields[1], f'"{superuser}"', *fields[3:]]))
            kept = True
    if not kept:
        raise StepFailed(
            f"pg_hba.conf has no line that lets {superuser} connect; fencing would lock it out"
        )
    return "\n".join([*out, "host all all all reject", "local all all reject", ""])


def _read_file(conn: psycopg.Connection[Any], path: str, missing_ok: bool = False) -> str | None:
    """A server-side file's exact text (bytes that are not UTF-8 survive the round trip)."""
    # PostgreSQL 15 reads a whole file only when told its length, and has no
    # missing_ok without one; a missing file's NULL size makes the read NULL.
    data = _one(conn, "SELECT pg_read_binary_file(%(p)s, 0, (pg_stat_file(%(p)s, %(m)s)).size, "
                "%(m)s)", {"p": path, "m": missing_ok})
    return None if data is None else bytes(data).decode("utf-8", "surrogateescape")


def _write_file(conn: psycopg.Connection[Any], path: str, text: str) -> None:
    """Write a server-side file with exactly these bytes.

    COPY TO escapes tabs and backslashes, so the bytes go through a large
    object: lo_export writes it verbatim. One transaction, so that a failed
    export leaves no large object behind.
    """
    with conn.transaction():
        oid = _one(conn, "SELECT lo_from_bytea(0, %s)", (text.encode("utf-8", "surrogateescape"),))
        conn.execute("SELECT lo_export(%s, %s)", (oid, path))
        conn.execute("SELECT lo_unlink(%s)", (oid,))


def _hba_errors(conn: psycopg.Connection[Any]) -> str | None:
    """The first problem in the hba file on disk, as the postmaster would see it on reload."""
    row = conn.execute(
        "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL "
        "ORDER BY line_number LIMIT 1"
    ).fetchone()
    return None if row is None else f"line {row[0]}: {row[1]}"


def _check_primary_superuser(conn: psycopg.Connection[Any], what: str) -> None:
    if _in_recovery(conn):
        raise StepFailed(f"cannot {what}: {_where(conn)} is a standby")
    if not _one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        raise StepFailed(f"cannot {what}: it needs a superuser connection (it writes pg_hba.conf)")


def _terminate_older(conn: psycopg.Connection[Any], cutoff: datetime, timeout: float) -> int:
    """End every client session but ours that began before ``cutoff``; wait until all are gone."""
    # A backend authenticates with the rules it was forked with, so those that
    # began before the reload are the danger. Later ones were let in by the
    # fence (the superuser): ending them too would fight the operator's tools.
    ended: set[int] = set()

    def none_left() -> bool:
        rows = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND backend_start < %s",
            (cutoff,),
        ).fetchall()
        ended.update(pid for pid, signalled in rows if signalled)
        return not rows

    wait_for(none_left, timeout=timeout, what="the fenced server's sessions to end")
    return len(ended)


def _fence_lsn(conn: psycopg.Connection[Any], timeout: float) -> str:
    """Mark the end of the fenced WAL and wait until it is flushed, so standbys can get it."""
    # pg_current_wal_lsn() is where WAL is written to, not where it ends: an
    # asynchronous commit can still sit in the WAL buffers behind it. A restore
    # point returns the exact end of the record it writes, which is what a
    # standby's pg_last_wal_replay_lsn() shows once it has replayed it, and it
    # names the place in the WAL for later forensics (recovery_target_name).
    lsn: str = _one(conn, "SELECT pg_create_restore_point(%s)::text", (_RESTORE_POINT,))
    wait_for(
        lambda: _one(conn, "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (lsn,)),
        timeout=timeout, what=f"the WAL up to {lsn} to be flushed",
    )
    return lsn


def fence(
    conn: psycopg.Connection[Any], superuser: str, note: str, *, timeout: float = 30.0
) -> FenceResult:
    """Let only replication and ``superuser`` connect to this primary and end every other session.

    Idempotent: a server already fenced keeps its fence and the original
    pg_hba.conf is read back from the sidecar the first fence wrote beside it.
    A session whose authentication began before the reload and is still
    going after the sweep (a slow client, at most authentication_timeout)
    escapes the sweep; fencing again ends it.
    """
    deadline = time.monotonic() + timeout
    with _step(conn, "fence", timeout):
        _check_primary_superuser(conn, "fence")
        if not _one(conn, "SELECT COALESCE((SELECT rolsuper AND rolcanlogin FROM pg_roles "
                    "WHERE rolname = %s), false)", (superuser,)):
            raise StepFailed(f"cannot fence for {superuser}: no such superuser may log in")
        hba_file: str = _one(conn, "SHOW hba_file")
        sidecar = hba_file + UNFENCED_SUFFIX
        current = _read_file(conn, hba_file)
        assert current is not None
        already = current.startswith(FENCE_MARKER)
        if already:
            original = _read_file(conn, sidecar, missing_ok=True)
            if original is None:
                raise StepFailed(f"{hba_file} is fenced but {sidecar} with its original is gone")
        else:
            original = current
            # The original goes to the sidecar first: a fence that dies half-way
            # can always be retried without losing it.
            _write_file(conn, sidecar, original)
            _write_file(conn, hba_file, fenced_hba(original, superuser, note, sidecar))
            problem = _hba_errors(conn)
            if problem:
                _write_file(conn, hba_file, original)
                raise StepFailed(f"the fenced pg_hba.conf would not load ({problem}); not fenced")
        # Reloaded again when already fenced: the call that fenced may have died before it.
        cutoff = _reload(conn, _remaining(deadline))
        terminated = _terminate_older(conn, cutoff, _remaining(deadline))
        lsn = _fence_lsn(conn, _remaining(deadline))
    return FenceResult(lsn, original, terminated, already)


def is_fenced(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server's pg_hba.conf on disk is a fence written by ``fence``."""
    with _step(conn, "read pg_hba.conf", 10.0):
        text = _read_file(conn, _one(conn, "SHOW hba_file"))
    return text is not None and text.startswith(FENCE_MARKER)


def unfence(conn: psycopg.Connection[Any], original_hba: str, *, timeout: float = 30.0) -> None:
    """Write the original pg_hba.conf back to a fenced primary and reload it."""
    if original_hba.startswith(FENCE_MARKER):
        raise StepFailed("cannot unfence with a fenced pg_hba.conf as the original")
    with _step(conn, "unfence", timeout):
        _check_primary_superuser(conn, "unfence")
        hba_file: str = _one(conn, "SHOW hba_file")
        fenced = _read_file(conn, hba_file)
        assert fenced is not None
        if not fenced.startswith(FENCE_MARKER):
            return  # not fenced (any more): nothing to undo
        _write_file(conn, hba_file, original_hba)
        problem = _hba_errors(conn)
        if problem:
            # The postmaster would keep the fence loaded; keep the file saying so.
            _write_file(conn, hba_file, fenced)
            raise StepFailed(f"the original pg_hba.conf would not load ({problem}); still fenced")
        _reload(conn, timeout)
