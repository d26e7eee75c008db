"""The fence: a primary that only replication and one superuser may reach.

A read-only flag is no fence: any session may turn it off again. The fence
rewrites pg_hba.conf so that only replication and one superuser may connect
(the rules are in ``hba``), makes the postmaster load it, and ends every
session that came in before. The original file goes to a sidecar beside it
first, so that a fence that dies half-way can be retried and undone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from failover.data.hba import fenced_hba, is_fence
from failover.data.statements import bounded, in_recovery, one, reload, remaining, where
from failover.exceptions import StepFailed
from failover.waiting import wait_for

UNFENCED_SUFFIX = ".failover-unfenced"  # sidecar beside the hba file: the true original
_RESTORE_POINT = "failover-fence"


@dataclass(frozen=True)
class FenceResult:
    """What fencing a primary did and where its WAL stood once it was fenced."""

    lsn: str  # end of the fence's restore point: everything written before the fence
    original_hba: str  # the pg_hba.conf to write back (unfence) or to rejoin with
    terminated: int  # client sessions ended by this call
    already: bool  # the server was fenced before this call


def _read_file(conn: psycopg.Connection[Any], path: str, missing_ok: bool = False) -> str | None:
    """A server-side file's exact text (bytes that are not UTF-8 survive the round trip)."""
    # PostgreSQL 15 reads a whole file only when told its length, and has no
    # missing_ok without one; a missing file's NULL size makes the read NULL.
    data = one(conn, "SELECT pg_read_binary_file(%(p)s, 0, (pg_stat_file(%(p)s, %(m)s)).size, "
               "%(m)s)", {"p": path, "m": missing_ok})
    return None if data is None else bytes(data).decode("utf-8", "surrogateescape")


def _write_file(conn: psycopg.Connection[Any], path: str, text: str) -> None:
    """Write a server-side file with exactly these bytes.

    COPY TO escapes tabs and backslashes, so the bytes go through a large
    object: lo_export writes it verbatim. One transaction, so that a failed
    export leaves no large object behind.
    """
    with conn.transaction():
        oid = one(conn, "SELECT lo_from_bytea(0, %s)", (text.encode("utf-8", "surrogateescape"),))
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
    if in_recovery(conn):
        raise StepFailed(f"cannot {what}: {where(conn)} is a standby")
    if not one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
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

    wait_for(none_left, timeout=timeout, what="the fenced server's sessions to end", retry_on=())
    return len(ended)


def _fence_lsn(conn: psycopg.Connection[Any], timeout: float) -> str:
    """Mark the end of the fenced WAL and wait until it is flushed, so standbys can get it."""
    # pg_current_wal_lsn() is where WAL is written to, not where it ends: an
    # asynchronous commit can still sit in the WAL buffers behind it. A restore
    # point returns the exact end of the record it writes, which is what a
    # standby's pg_last_wal_replay_lsn() shows once it has replayed it, and it
    # names the place in the WAL for later forensics (recovery_target_name).
    lsn: str = one(conn, "SELECT pg_create_restore_point(%s)::text", (_RESTORE_POINT,))
    wait_for(
        lambda: one(conn, "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (lsn,)),
        timeout=timeout, what=f"the WAL up to {lsn} to be flushed", retry_on=(),
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
    with bounded(conn, "fence", timeout):
        _check_primary_superuser(conn, "fence")
        if not one(conn, "SELECT COALESCE((SELECT rolsuper AND rolcanlogin FROM pg_roles "
                   "WHERE rolname = %s), false)", (superuser,)):
            raise StepFailed(f"cannot fence for {superuser}: no such superuser may log in")
        hba_file: str = one(conn, "SHOW hba_file")
        sidecar = hba_file + UNFENCED_SUFFIX
        current = _read_file(conn, hba_file)
        assert current is not None
        already = is_fence(current)
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
        cutoff = reload(conn, remaining(deadline))
        terminated = _terminate_older(conn, cutoff, remaining(deadline))
        lsn = _fence_lsn(conn, remaining(deadline))
    return FenceResult(lsn, original, terminated, already)


def is_fenced(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server's pg_hba.conf on disk is a fence written by ``fence``."""
    with bounded(conn, "read pg_hba.conf", 10.0):
        text = _read_file(conn, one(conn, "SHOW hba_file"))
    return text is not None and is_fence(text)


def unfence(conn: psycopg.Connection[Any], original_hba: str, *, timeout: float = 30.0) -> None:
    """Write the original pg_hba.conf back to a fenced primary and reload it."""
    if is_fence(original_hba):
        raise StepFailed("cannot unfence with a fenced pg_hba.conf as the original")
    with bounded(conn, "unfence", timeout):
        _check_primary_superuser(conn, "unfence")
        hba_file: str = one(conn, "SHOW hba_file")
        fenced = _read_file(conn, hba_file)
        assert fenced is not None
        if not is_fence(fenced):
            return  # not fenced (any more): nothing to undo
        _write_file(conn, hba_file, original_hba)
        problem = _hba_errors(conn)
        if problem:
            # The postmaster would keep the fence loaded; keep the file saying so.
            _write_file(conn, hba_file, fenced)
            raise StepFailed(f"the original pg_hba.conf would not load ({problem}); still fenced")
        reload(conn, timeout)
