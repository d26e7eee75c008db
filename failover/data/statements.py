"""How the data plane's moves talk to a server: bounded statements, one-sentence failures.

Every move is idempotent (a retried step finds its work done and says so),
bounded by a timeout, and fails with StepFailed and one sentence. They need
an autocommit connection as a superuser: ALTER SYSTEM refuses to run inside
a transaction block, and the fence reads and writes server files.

A wait inside a move polls on the move's own connection, so no error of a
poll means "not yet": a dropped connection or a cancelled statement ends the
move at once (``retry_on=()``) instead of waiting out its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

import psycopg

from failover.exceptions import FatalError, StepFailed
from failover.waiting import WaitTimeout, wait_for


def where(conn: psycopg.Connection[Any]) -> str:
    """The server a connection talks to, for a sentence."""
    return f"the PostgreSQL server at {conn.info.host}:{conn.info.port}"


@contextmanager
def bounded(conn: psycopg.Connection[Any], what: str, timeout: float) -> Iterator[None]:
    """Bound every statement by ``timeout`` and turn failures into one StepFailed sentence."""
    if not conn.autocommit:
        raise FatalError(f"cannot {what}: the connection must be in autocommit mode")
    server = where(conn)
    try:
        previous = one(conn, "SELECT current_setting('statement_timeout')")
        one(conn, "SELECT set_config('statement_timeout', %s, false)",
            (f"{max(1, int(timeout * 1000))}ms",))
        try:
            yield
        finally:
            if not conn.closed:
                with suppress(psycopg.Error):
                    conn.execute("SELECT set_config('statement_timeout', %s, false)", (previous,))
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepFailed(f"could not {what} at {server}: {reason}") from exc
    except WaitTimeout as exc:
        raise StepFailed(f"could not {what} at {server}: {exc}") from exc


def one(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """The first column of the first row of a query."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (a time.monotonic() value), never negative."""
    return max(0.0, deadline - time.monotonic())


def in_recovery(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server is a standby (in recovery)."""
    return bool(one(conn, "SELECT pg_is_in_recovery()"))


def reload(conn: psycopg.Connection[Any], timeout: float) -> datetime:
    """Reload the configuration and wait until the postmaster has done it.

    pg_reload_conf() only signals the postmaster, which rereads its files and
    then signals every backend. Our own backend takes the signal before its
    next statement, so once our pg_conf_load_time() moves, the postmaster has
    reloaded; it forks no new backend before it has also reread pg_hba.conf.
    """
    before = one(conn, "SELECT pg_conf_load_time()")
    if not one(conn, "SELECT pg_reload_conf()"):
        raise StepFailed(f"{where(conn)} did not accept the signal to reload its configuration")

    def reloaded() -> datetime | None:
        now: datetime = one(conn, "SELECT pg_conf_load_time()")
        return now if now > before else None

    return wait_for(reloaded, timeout=timeout, what="the configuration to be reloaded",
                    retry_on=())
