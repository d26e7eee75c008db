"""Connection pool, role detection and error translation for the site's PostgreSQL.

The role (primary or standby) is read from the server on every write and readiness
check, never cached: a standby promoted during a failover must start taking writes
without an app restart. Connection-level failures become `DatabaseUnavailable` (503),
writes refused by a standby become `ReadOnlyDatabase` (503).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from . import migrations
from .errors import AppError, DatabaseUnavailable, ReadOnlyDatabase, SchemaNotReady

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[TupleRow]

# A cause quoted in a 503 body is cut to this length; libpq messages can be paragraphs.
_MAX_CAUSE_CHARS = 200
WAIT_SLICE = 0.1  # seconds between looks at whether the server has started refusing


class Role(StrEnum):
    """Replication role of the site's database as seen by this app."""

    PRIMARY = "primary"
    STANDBY = "standby"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DatabaseStatus:
    """What a readiness check learned from the database."""

    role: Role
    writable: bool
    schema_version: int | None


def short_cause(exc: BaseException) -> str:
    """Return the first line of an exception message, trimmed for an error sentence."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    first = first.removeprefix("connection failed: ")
    if len(first) > _MAX_CAUSE_CHARS:
        first = first[: _MAX_CAUSE_CHARS - 3] + "..."
    return first


class _ObservedConnection(psycopg.Connection[TupleRow]):
    """A connection class that remembers why the latest connection attempt failed.

    The pool connects in background threads and only tells waiting requests "couldn't
    get a connection after N sec"; keeping the real cause lets a 503 say *why*.
    """

    last_failure: ClassVar[str | None] = None

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """Connect like `psycopg.Connection.connect`, recording success or failure."""
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            cause = short_cause(exc)
            if cls.last_failure is None:
                logger.warning("cannot connect to the database: %s", cause)
            cls.last_failure = cause
            raise
        if cls.last_failure is not None:
            logger.warning("connected to the database again")
        cls.last_failure = None
        return conn


def _configure(conn: Conn) -> None:
    """Set per-session defaults on each new pooled connection."""
    # UTC timestamps in responses whatever the server's TimeZone; a statement timeout so
    # a stuck server yields a 503 instead of a request hanging forever.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET statement_timeout = '10s'")


class Database:
    """The site's database: a small pool plus role-aware read and write sessions."""

    def __init__(
        self,
        dsn: str,
        site: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        connect_timeout: int = 3,
        timeout: float = 5.0,
        outage_timeout: float = 0.1,
        reconnect_timeout: float = 5.0,
    ) -> None:
        """Create the pool (closed; see `open`).

        ``timeout`` bounds the wait for a pooled connection; once the latest connection
        attempt has failed (before the request or while it waits), the request waits
        at most ``outage_timeout`` more, so requests during an outage fail fast.
        ``reconnect_timeout`` caps the pool's exponential reconnection
        backoff: after it gives up, the next request starts a fresh attempt at once,
        so the app notices a recovered server within seconds rather than minutes.
        """
        self.site = site
        self._timeout = timeout
        self._outage_timeout = min(outage_timeout, timeout)
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._pool: ConnectionPool[_ObservedConnection] = ConnectionPool(
            dsn,
            connection_class=_ObservedConnection,
            kwargs=_connection_kwargs(dsn, site, connect_timeout),
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=_configure,
            # Replaces connections killed by a fenced, restarted or promoted server
            # before a request gets one.
            check=ConnectionPool.check_connection,
            timeout=timeout,
            reconnect_timeout=reconnect_timeout,
            name=f"refapp-{site}",
        )

    def open(self) -> None:
        """Start the pool without waiting for a first connection."""
        self._pool.open(wait=False)

    def close(self) -> None:
        """Close the pool and its connections."""
        self._pool.close(timeout=2.0)

    def prepare(self, timeout: float | None = None) -> DatabaseStatus | None:
        """Check the database at start-up, migrating it if it is a writable primary.

        Returns None (after logging why) when the database cannot be reached: the app
        starts anyway and migrates later, once it finds itself on a primary.
        """
        try:
            status = self.status(timeout)
        except AppError as exc:
            logger.warning("database of site %r not ready at start-up: %s", self.site, exc)
            return None
        logger.info(
            "database of site %r is %s (schema version %s)",
            self.site,
            status.role,
            status.schema_version,
        )
        return status

    def status(self, timeout: float | None = None) -> DatabaseStatus:
        """Return role, writability and schema version, migrating a writable primary."""
        with self._connection(timeout) as conn:
            role, writable = self._probe(conn)
            version = self._ensure_schema(conn, role, writable, force=True)
            return DatabaseStatus(role=role, writable=writable, schema_version=version)

    @contextmanager
    def reading(self) -> Iterator[Conn]:
        """Yield an autocommit connection for reads (any role)."""
        with self._connection() as conn:
            if not self._schema_ready:
                role, writable = self._probe(conn)
                self._ensure_schema(conn, role, writable)
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Conn]:
        """Yield a connection inside a transaction on a writable primary.

        Raises `ReadOnlyDatabase` before yielding when the database is a standby (or
        otherwise read-only), so callers can check writability before side effects
        such as uploading an object.
        """
        with self._connection() as conn:
            role, writable = self._probe(conn)
            if not writable:
                raise ReadOnlyDatabase(self.site, role)
            if not self._schema_ready:
                self._ensure_schema(conn, role, writable)
            try:
                with conn.transaction():
                    yield conn
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                # Writability changed after the probe (e.g. fenced mid-request).
                raise ReadOnlyDatabase(self.site, role) from exc

    def _probe(self, conn: Conn) -> tuple[Role, bool]:
        row = conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'"
        ).fetchone()
        assert row is not None
        in_recovery, read_only = bool(row[0]), bool(row[1])
        role = Role.STANDBY if in_recovery else Role.PRIMARY
        return role, not in_recovery and not read_only

    def _ensure_schema(
        self, conn: Conn, role: Role, writable: bool, *, force: bool = False
    ) -> int | None:
        """Migrate a writable primary once; elsewhere just look at the schema version.

        Returns the schema version found or reached. ``force`` re-reads the version even
        when the schema is already known to be ready (for readiness reports).
        """
        with self._schema_lock:
            if self._schema_ready and not force:
                return migrations.LATEST_VERSION
            version = migrations.current_version(conn)
            if (version is None or version < migrations.LATEST_VERSION) and writable:
                applied = migrations.migrate(conn)
                if applied:
                    logger.warning(
                        "applied schema migrations %s on the %s of site %r",
                        applied,
                        role,
                        self.site,
                    )
                version = migrations.current_version(conn)
            if version is not None and version >= migrations.LATEST_VERSION:
                self._schema_ready = True
            return version

    def _getconn(self, timeout: float) -> _ObservedConnection:
        """A pooled connection, waited for in short slices.

        The pool reconnects in the background; a request that began waiting
        before the server started refusing (a fence, a crash) would otherwise
        wait out the whole timeout. Between slices it looks whether a fresh
        attempt failed, and if so gives up at once: clients get a 503 now and
        can go elsewhere, instead of timing out.
        """
        deadline = time.monotonic() + timeout
        refused = False
        while True:
            if not refused and _ObservedConnection.last_failure is not None:
                refused = True
                deadline = min(deadline, time.monotonic() + self._outage_timeout)
            left = deadline - time.monotonic()
            try:
                return self._pool.getconn(timeout=max(0.0, min(left, WAIT_SLICE)))
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise

    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[Conn]:
        """Yield a pooled autocommit connection; translate database failures to 503s."""
        if timeout is None:
            timeout = self._timeout
        started = time.monotonic()
        try:
            conn = self._getconn(timeout)
            try:
                yield conn
            finally:
                self._pool.putconn(conn)
        except AppError:
            raise
        except PoolTimeout:
            cause = _ObservedConnection.last_failure or (
                f"no connection available within {time.monotonic() - started:.1f} s"
            )
            raise DatabaseUnavailable(self.site, cause) from None
        except PoolClosed:
            raise DatabaseUnavailable(self.site, "the connection pool is not open") from None
        except psycopg.errors.UndefinedTable as exc:
            # Someone recreated the database under us: migrate again when next possible.
            self._schema_ready = False
            raise SchemaNotReady(self.site, short_cause(exc)) from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise ReadOnlyDatabase(self.site, Role.UNKNOWN) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise DatabaseUnavailable(self.site, short_cause(exc)) from exc


def _connection_kwargs(dsn: str, site: str, connect_timeout: int) -> dict[str, Any]:
    """Connection parameters added to the DSN; settings in the DSN itself win."""
    defaults: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "application_name": f"refapp-{site}",
        # Detect a silently vanished server (a fenced host drops packets rather than
        # refusing them) within seconds instead of the kernel's minutes.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10000,
    }
    given = conninfo_to_dict(dsn)
    kwargs = {key: value for key, value in defaults.items() if key not in given}
    # Explicit transactions only (`conn.transaction()`), so that each migration and each
    # write is exactly one transaction and no idle transaction is ever left open.
    kwargs["autocommit"] = True
    return kwargs
