"""An asynchronous libpq session that leaves nothing open when a wait on it is cut short.

``psycopg.AsyncConnection.connect`` leaves the socket of a connect that timed
out or was cancelled open until Python's cycle collector runs (seen: a
stalled server kept its connection until ``gc.collect()``), and cancelling a
query makes psycopg send a cancel request and wait up to 10 s more for a
frozen server. A caller that bounds every wait by its own deadline (the
controller's database probe) connects with ``connect`` here and, when it gives
up on a query, shuts the socket with ``abort``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import psycopg
from psycopg import pq


async def connect(conninfo: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit session, its handshake driven here so that giving up closes it.

    The libpq connection is finished the moment the wait ends in any way but
    success, so a connect cut short by the caller's deadline leaves nothing
    open. libpq does not enforce ``connect_timeout`` in this mode: the
    caller's deadline bounds the whole handshake, however long a frozen
    server stalls.
    """
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    try:
        while True:
            if pgconn.status == pq.ConnStatus.BAD:
                raise psycopg.OperationalError(_libpq_error(pgconn))
            polled = pgconn.connect_poll()
            if polled == pq.PollingStatus.OK:
                break
            if polled == pq.PollingStatus.FAILED:
                raise psycopg.OperationalError(_libpq_error(pgconn))
            # The socket can change between polls (another address, no TLS after all).
            await _until_ready(pgconn.socket, reading=polled == pq.PollingStatus.READING)
        pgconn.nonblocking = 1
        conn = psycopg.AsyncConnection(pgconn)
        await conn.set_autocommit(True)
        return conn
    except BaseException:
        pgconn.finish()
        raise


def abort(conn: psycopg.AsyncConnection[Any]) -> None:
    """Shut the session's socket down under libpq, so a wait on it ends at once.

    A shut-down socket reads as the server gone: the query waiting on it fails
    now, with no cancel request sent to a server that may be frozen.
    """
    try:
        fd = conn.pgconn.socket
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:  # a dup of fd
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # already closed: nothing waits on it


async def _until_ready(fd: int, reading: bool) -> None:
    """Wait until the socket ``fd`` can be read (or written)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_reader if reading else loop.add_writer)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_reader if reading else loop.remove_writer)(fd)


def _libpq_error(pgconn: pq.abc.PGconn) -> str:
    message = pgconn.error_message.decode(errors="replace")
    return " ".join(message.split()) or "the connection failed"
