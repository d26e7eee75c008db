"""PostgreSQL servers: how to reach one, and what it says of itself.

The facts (role, position, replication, what a standby received) serve the
lab's status and the controller alike, so there is one way to ask a server
who it is. What a failover does to the databases lives beside this:
``replication`` (synchronous commits, catch-up, promote) and ``fencing``.
"""

from __future__ import annotations

import math
import socket
import struct
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from failover.data.statements import bounded

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


def wal_receiver(conn: psycopg.Connection[Any]) -> WalReceiver | None:
    """On a standby, what it received from its primary and replayed; None on a primary."""
    with bounded(conn, "read the WAL receiver", 10.0), conn.cursor(row_factory=dict_row) as cur:
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
