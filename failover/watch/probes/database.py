"""A site's PostgreSQL as the controller sees it: role, WAL position, each standby's lag.

One session is kept between looks (a look every second at hundreds of
databases must not cost a backend fork each time) and dropped after any
failure; one the server closed while idle gets one fresh try inside the same
deadline. Connecting and giving up go through ``failover.data.pgasync``, so a
look cut short leaves no socket open.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from failover.data import pgasync
from failover.data.postgres import PgEndpoint
from failover.provision.network import is_address
from failover.threads import retrieve
from failover.watch.probes.contract import Facts, Finding, Looking, observe
from failover.watch.signals import Observation, ProbeKind

APPLICATION_NAME = "failover-watch"  # how the probes' sessions show in pg_stat_activity

# One round trip: role, position and, on a primary, each standby's replay lag.
# The CASE keeps pg_current_wal_lsn() away from a server in recovery (it errors there).
_FACTS_QUERY = """
SELECT pg_is_in_recovery(),
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
             ELSE pg_current_wal_lsn() END)::text,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE (
         SELECT json_agg(json_build_object(
                  'name', application_name, 'state', state, 'sync_state', sync_state,
                  'lag_bytes',
                  COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint)
                ORDER BY application_name)
         FROM pg_stat_replication) END
"""


class DatabaseProbe(Looking):
    """A site's PostgreSQL: role, WAL position, and on a primary each standby's lag.

    One session is kept between looks and dropped after any failure. Facts:
    ``role``, ``lsn``, ``standbys`` (site, or application_name when no site
    streams under it, to replay lag in bytes), ``replication`` (each standby's
    state and sync state), ``lag_bytes`` (the largest lag; None without standbys).
    """

    kind: ProbeKind = "database"

    def __init__(self, target: str, endpoint: PgEndpoint, *, vantage: str,
                 interval: float = 1.0, timeout: float = 1.0,
                 sites_by_name: Mapping[str, str] | None = None,
                 application_name: str = APPLICATION_NAME) -> None:
        super().__init__(target, vantage, interval, timeout)
        self.endpoint = endpoint
        self._sites = dict(sites_by_name or {})
        self._application_name = application_name
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def look(self) -> Observation:
        """One query on the kept session (connecting first when there is none)."""
        return await observe(self, self._ask)

    async def _ask(self) -> Finding:
        reused = self._conn is not None
        try:
            return await self._query(await self._connection())
        except psycopg.OperationalError:
            await self._drop()
            if not reused:
                raise
        except BaseException:
            await self._drop()
            raise
        # The kept session failed (a restart, a fence ending sessions): that says
        # nothing about the server now. One fresh session decides, same deadline.
        try:
            return await self._query(await self._connection())
        except BaseException:
            await self._drop()
            raise

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await pgasync.connect(await self._conninfo())
        return self._conn

    async def _conninfo(self) -> str:
        e = self.endpoint
        params: dict[str, Any] = {
            "host": e.host, "port": e.port, "user": e.user, "dbname": e.dbname,
            "passfile": e.passfile, "password": e.password,
            "application_name": self._application_name,
        }
        if not e.host.startswith("/") and not is_address(e.host):
            # libpq would resolve the name itself, blocking the event loop.
            infos = await asyncio.get_running_loop().getaddrinfo(
                e.host, e.port, type=socket.SOCK_STREAM)
            params["hostaddr"] = infos[0][4][0]
        return make_conninfo(**params)

    async def _query(self, conn: psycopg.AsyncConnection[Any]) -> Finding:
        task = asyncio.ensure_future(self._facts(conn))
        task.add_done_callback(retrieve)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            pgasync.abort(conn)  # the query task now fails at once; wait for it, briefly
            await asyncio.wait({task}, timeout=1.0)
            raise

    async def _facts(self, conn: psycopg.AsyncConnection[Any]) -> Finding:
        cursor = await conn.execute(_FACTS_QUERY)
        row = await cursor.fetchone()
        assert row is not None
        in_recovery, lsn, standbys = row
        facts: Facts = {"role": "standby" if in_recovery else "primary", "lsn": lsn or "0/0"}
        if not in_recovery:
            lags = {self._sites.get(s["name"], s["name"]): int(s["lag_bytes"])
                    for s in standbys or []}
            facts["standbys"] = lags
            facts["replication"] = {
                self._sites.get(s["name"], s["name"]):
                    {"state": s["state"], "sync_state": s["sync_state"]}
                for s in standbys or []}
            facts["lag_bytes"] = max(lags.values(), default=None)
        return "up", "", facts

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def aclose(self) -> None:
        """Close the kept session."""
        await self._drop()
