"""Replication moves: synchronous commits, catch-up, promotion.

What a failover does to the streaming pair: make the primary's commits wait
for the standby (so a switchover loses nothing), wait until the standby has
replayed up to a position, and promote it. Each move is idempotent and
bounded by its timeout (see ``statements``).
"""

from __future__ import annotations

import math
from typing import Any

import psycopg
from psycopg import sql

from failover.data.statements import bounded, in_recovery, one, reload, where
from failover.exceptions import StepFailed
from failover.waiting import wait_for


def set_synchronous(conn: psycopg.Connection[Any], standby: str, *, timeout: float = 10.0) -> None:
    """Make commits wait until ``standby`` (its application_name) has applied them."""
    names = 'FIRST 1 ("' + standby.replace('"', '""') + '")'  # a quoted name, as syncrep parses it
    with bounded(conn, f"make {standby} a synchronous standby", timeout):
        conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}")
                     .format(sql.Literal(names)))
        conn.execute("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
        reload(conn, timeout)
        # A setting on the server's command line outranks ALTER SYSTEM: check it took.
        now = conn.execute("SELECT current_setting('synchronous_standby_names'), "
                           "current_setting('synchronous_commit')").fetchone()
        if now != (names, "remote_apply"):
            raise StepFailed(f"{where(conn)} kept synchronous_standby_names={now and now[0]!r} "
                             "after ALTER SYSTEM: is it set on its command line?")


def set_asynchronous(conn: psycopg.Connection[Any], *, timeout: float = 10.0) -> None:
    """Let commits stop waiting for any standby (the defaults, also on a standby)."""
    # ALTER SYSTEM only rewrites postgresql.auto.conf (no WAL), so it works in
    # recovery too: a standby drops a synchronous setting it got from a base
    # backup before it is promoted and has no standby of its own.
    with bounded(conn, "make commits asynchronous", timeout):
        conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("ALTER SYSTEM RESET synchronous_commit")
        reload(conn, timeout)


def wait_synchronous(conn: psycopg.Connection[Any], standby: str, timeout: float) -> None:
    """Wait until the primary reports ``standby`` as its synchronous standby."""
    def sync() -> bool:
        state = conn.execute(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s", (standby,)
        ).fetchone()
        return state is not None and state[0] == "sync"

    with bounded(conn, f"see {standby} as a synchronous standby", timeout):
        wait_for(sync, timeout=timeout, what=f"{standby} to be a synchronous standby",
                 retry_on=())


def wait_replayed(conn: psycopg.Connection[Any], lsn: str, timeout: float) -> str:
    """On a standby, wait until it has replayed up to ``lsn``; returns the replayed LSN."""
    def replayed() -> str | None:
        row = conn.execute(
            "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= %s::pg_lsn",
            (lsn,),
        ).fetchone()
        assert row is not None
        return row[0] if row[1] else None

    with bounded(conn, f"replay WAL up to {lsn}", timeout):
        if not in_recovery(conn):
            # A standby promoted in an earlier attempt still knows what it replayed.
            done = replayed()
            if done is None:
                raise StepFailed(f"{where(conn)} is a primary that never replayed up to {lsn}")
            return done
        return wait_for(replayed, timeout=timeout, what=f"the standby to replay up to {lsn}",
                        retry_on=())


def promote(conn: psycopg.Connection[Any], timeout: float) -> bool:
    """Promote a standby; True if this call promoted it, False if it was already primary."""
    wait_seconds = max(1, math.ceil(timeout))
    with bounded(conn, "promote", timeout + 5):
        if not in_recovery(conn):
            return False
        try:
            done = one(conn, "SELECT pg_promote(true, %s)", (wait_seconds,))
        except psycopg.errors.ObjectNotInPrerequisiteState:
            # "recovery is not in progress": another caller promoted it meanwhile.
            return False
        if not done:
            raise StepFailed(f"{where(conn)} did not finish promoting within {wait_seconds}s")
        return True
