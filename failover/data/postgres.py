"""Read-only facts about PostgreSQL servers: role, position, replication.

The data plane's moves (fence, promote, rewind) build on these; the lab's
status uses them too, so there is one way to ask a server who it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

Role = Literal["primary", "standby"]


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

    def connect(self, timeout: float = 3.0, **kwargs: Any) -> psycopg.Connection[Any]:
        """An autocommit connection with a connect timeout."""
        params: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname,
            "connect_timeout": max(1, round(timeout)), "autocommit": True,
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
