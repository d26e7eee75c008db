"""The controller's probes: asynchronous looks at apps, databases, DNS and provider APIs.

A probe turns one look at one target from one vantage point into an
``Observation`` and never raises: a timeout, a refusal or a wrong answer is an
observation with status down and one line saying why. Each look is bounded
by the probe's timeout with ``asyncio.timeout``, whatever the library under it
would wait for. ``ProbeScheduler`` runs every probe on its own drift-free
schedule, hundreds of them on one event loop and one core.

Connections are kept between looks (HTTP keep-alive, one PostgreSQL session
per database), because a look every second at hundreds of targets must not
cost a TCP handshake, a PostgreSQL backend fork and a TIME_WAIT socket each
time. A kept connection that fails is dropped and the next look connects
afresh; one that the server closed while idle gets one fresh try inside the
same deadline, since it says nothing about the server now.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import httpx
import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from failover import logs
from failover.config import (
    Ec2ApiConfig,
    FailoverConfig,
    HcloudApiConfig,
    ProbeSettings,
    WatchConfig,
)
from failover.data.postgres import PgEndpoint
from failover.dns.authoritative import EDNS_PAYLOAD
from failover.dns.records import Record, RecordKey
from failover.dns.rfc2136 import Rfc2136Settings
from failover.dns.route53 import Route53Provider
from failover.engine.deployment import Deployment
from failover.watch.providers import ApiAnswer, check_api
from failover.watch.signals import Observation, ProbeKind, Status

log = logging.getLogger("failover.watch")
_T = TypeVar("_T")
Facts = dict[str, Any]
Finding = tuple[Status, str, Facts]  # what one look found: status, detail, facts
APPLICATION_NAME = "failover-watch"  # how the probes' sessions show in pg_stat_activity


class Probe(Protocol):
    """One target looked at from one vantage point, on its own interval and timeout."""

    kind: ProbeKind
    target: str  # a site's name; for DNS, the DNS provider's name
    vantage: str
    interval: float
    timeout: float

    async def look(self) -> Observation:
        """Look once, within ``timeout``; every failure is an Observation, never a raise."""
        ...

    async def aclose(self) -> None:
        """Close what the probe keeps open between looks."""
        ...


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its first non-empty line, else its type's name."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return (text or type(exc).__name__)[:limit]


async def _observe(probe: Probe, ask: Callable[[], Awaitable[Finding]]) -> Observation:
    """Run one look under the probe's deadline and turn whatever happened into an Observation."""
    at, started = time.time(), time.perf_counter()
    try:
        async with asyncio.timeout(probe.timeout):
            status, detail, facts = await ask()
    except TimeoutError:
        status, detail, facts = "down", f"no answer in {probe.timeout:g}s", {}
    except Exception as exc:  # the contract: a failed look is an answer, not an error
        status, detail, facts = "down", one_line(exc), {}
    return Observation(probe.kind, probe.target, probe.vantage, at, status,
                       time.perf_counter() - started, detail, MappingProxyType(facts))


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background task's outcome as seen (no "exception never retrieved")."""
    if not task.cancelled():
        task.exception()


class _OneThread:
    """Blocking calls in a thread, never more than one at a time for one probe.

    A thread cannot be cancelled: when a look gives up at its deadline the
    call runs on. Starting another each look would pile threads up behind a
    dark endpoint and starve asyncio's shared pool, so while one is still
    out, the look says so instead.
    """

    def __init__(self) -> None:
        self._pending: asyncio.Future[Any] | None = None
        self._since = 0.0

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a thread; RuntimeError when the previous call has not returned."""
        if self._pending is not None and not self._pending.done():
            raise RuntimeError(f"still waiting for the answer to a look started "
                               f"{time.monotonic() - self._since:.1f}s ago")
        self._since = time.monotonic()
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        future.add_done_callback(_retrieve)
        self._pending = future
        # Shielded: a look cut short must not forget that its thread still runs.
        result: _T = await asyncio.shield(future)
        return result


# --- HTTP readiness -------------------------------------------------------------


class _PerOriginTransport(httpx.AsyncBaseTransport):
    """A small connection pool per origin, all leaving from one local address.

    httpcore's pool scans every connection it holds on every request (twice),
    so one pool for a thousand origins costs O(n) per look and O(n^2) per
    interval; a pool per origin keeps a look O(1).
    """

    def __init__(self, local_address: str | None, keepalive: float) -> None:
        self._local_address = local_address
        self._limits = httpx.Limits(max_connections=4, max_keepalive_connections=1,
                                    keepalive_expiry=keepalive)
        # One TLS context for all: httpx would load the CA bundle once per pool.
        self._tls = ssl.create_default_context()
        self._pools: dict[tuple[bytes, bytes, int | None], httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request through its origin's pool."""
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = httpx.AsyncHTTPTransport(local_address=self._local_address, verify=self._tls,
                                            limits=self._limits, trust_env=False)
            self._pools[key] = pool
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        """Close every pool."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class VantageClient:
    """The HTTP client every HTTP probe of one vantage point shares.

    Its connections leave from the vantage point's ``source_address``, so the
    app sees each vantage point as its own client. Connections are kept alive
    between looks (cheap at hundreds of targets, no TIME_WAIT pile-up); the
    client closes when the last probe using it closes.
    """

    def __init__(self, name: str, source_address: str | None = None, *,
                 keepalive: float = 5.0, shared_pool: bool = False) -> None:
        self.name = name
        self.source_address = source_address
        transport: httpx.AsyncBaseTransport = (
            # shared_pool: httpx's own single pool, kept to measure against (bench_probes).
            httpx.AsyncHTTPTransport(local_address=source_address, trust_env=False,
                                     limits=httpx.Limits(max_connections=None,
                                                         max_keepalive_connections=None,
                                                         keepalive_expiry=keepalive))
            if shared_pool else _PerOriginTransport(source_address, keepalive))
        # trust_env off: an HTTP_PROXY in the environment must not stand between
        # a vantage point and the app it judges.
        self.client = httpx.AsyncClient(transport=transport, trust_env=False,
                                        follow_redirects=False)
        self._users = 0

    def acquire(self) -> httpx.AsyncClient:
        """The client, counted as used by one more probe."""
        self._users += 1
        return self.client

    async def release(self) -> None:
        """One probe is done with the client; the last one closes it."""
        self._users -= 1
        if self._users <= 0:
            await self.client.aclose()


def _connect_reason(exc: BaseException) -> str:
    """Why a connect failed, in the system's words ("connection refused").

    anyio wraps the socket's error as "All connection attempts failed"; the
    OSError it names as the cause says what happened.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno).lower()  # asyncio's own strerror names the address
        seen = seen.__cause__ or seen.__context__
    return one_line(exc)


class HttpProbe:
    """A site's app readiness (``GET {app_url}/readyz``: 200 is up) from one vantage point."""

    kind: ProbeKind = "http"

    def __init__(self, target: str, url: str, vantage: VantageClient, *,
                 interval: float = 1.0, timeout: float = 1.0) -> None:
        self.target = target
        self.url = url
        self.vantage = vantage.name
        self.interval = interval
        self.timeout = timeout
        self._vantage = vantage
        self._client = vantage.acquire()

    async def look(self) -> Observation:
        """One GET of the readiness URL."""
        return await _observe(self, self._ask)

    async def _get(self) -> httpx.Response:
        return await self._client.get(self.url, timeout=self.timeout)

    async def _ask(self) -> Finding:
        try:
            try:
                response = await self._get()
            except httpx.RemoteProtocolError:
                # Most likely a kept-alive connection the server closed just as
                # it was reused: one fresh connection decides, in the same deadline.
                response = await self._get()
        except httpx.TimeoutException:
            return "down", f"no answer in {self.timeout:g}s", {}
        except httpx.ConnectError as exc:
            return "down", f"cannot connect to {self.url}: {_connect_reason(exc)}", {}
        except httpx.RemoteProtocolError as exc:
            return "down", f"the connection closed without an answer ({one_line(exc)})", {}
        try:
            body = response.json()
        except ValueError:
            body = None
        facts: Facts = {"code": response.status_code}
        if isinstance(body, dict):
            facts.update({k: body[k] for k in ("role", "writable", "site") if k in body})
        if response.status_code == 200:
            return "up", "", facts
        why = body.get("error") if isinstance(body, dict) else None
        detail = f"HTTP {response.status_code} {why or response.reason_phrase}"
        return "down", " ".join(detail.split())[:200], facts

    async def aclose(self) -> None:
        """Give the shared client back."""
        await self._vantage.release()


# --- PostgreSQL -------------------------------------------------------------------

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


async def connect(conninfo: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit session, its handshake driven here so that giving up closes it.

    ``psycopg.AsyncConnection.connect`` leaves the socket of a connect that
    timed out or was cancelled open until Python's cycle collector runs
    (seen: a stalled server kept its connection until ``gc.collect()``).
    Here the libpq connection is finished the moment the wait ends in any
    way but success, so a look cut short by its deadline leaves nothing open.
    libpq does not enforce ``connect_timeout`` in this mode: the caller's
    deadline bounds the whole handshake, however long a frozen server stalls.
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


def _libpq_error(pgconn: pq.abc.PGconn) -> str:
    message = pgconn.error_message.decode(errors="replace")
    return " ".join(message.split()) or "the connection failed"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _abort(conn: psycopg.AsyncConnection[Any]) -> None:
    """Shut the session's socket down under libpq, so a wait on it ends at once.

    Cancelling psycopg mid-query makes it send a cancel request and wait up to
    10 s more for a frozen server; a shut-down socket reads as the server gone.
    """
    try:
        fd = conn.pgconn.socket
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:  # a dup of fd
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # already closed: nothing waits on it


class DatabaseProbe:
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
        self.target = target
        self.endpoint = endpoint
        self.vantage = vantage
        self.interval = interval
        self.timeout = timeout
        self._sites = dict(sites_by_name or {})
        self._application_name = application_name
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def look(self) -> Observation:
        """One query on the kept session (connecting first when there is none)."""
        return await _observe(self, self._ask)

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
            self._conn = await connect(await self._conninfo())
        return self._conn

    async def _conninfo(self) -> str:
        e = self.endpoint
        params: dict[str, Any] = {
            "host": e.host, "port": e.port, "user": e.user, "dbname": e.dbname,
            "passfile": e.passfile, "password": e.password,
            "application_name": self._application_name,
        }
        if not e.host.startswith("/") and not _is_address(e.host):
            # libpq would resolve the name itself, blocking the event loop.
            infos = await asyncio.get_running_loop().getaddrinfo(
                e.host, e.port, type=socket.SOCK_STREAM)
            params["hostaddr"] = infos[0][4][0]
        return make_conninfo(**params)

    async def _query(self, conn: psycopg.AsyncConnection[Any]) -> Finding:
        task = asyncio.ensure_future(self._facts(conn))
        task.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            _abort(conn)  # the query task now fails at once; wait for it, briefly
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


# --- DNS -----------------------------------------------------------------------------


class DnsReader(Protocol):
    """Where a DNS probe asks: a provider's server or its API."""

    where: str

    async def read(self, keys: Sequence[RecordKey], timeout: float) -> dict[RecordKey, Record]:
        """The RRsets the provider answers for ``keys`` (absent ones left out)."""
        ...


class AuthoritativeReader:
    """An authoritative server asked directly over UDP (TCP when truncated), no recursion."""

    def __init__(self, server: str, port: int = 53, source: str | None = None) -> None:
        self.server = server
        self.port = port
        self.source = source
        self.where = f"{server}:{port}"

    async def read(self, keys: Sequence[RecordKey], timeout: float) -> dict[RecordKey, Record]:
        """Every key asked at once; ``timeout`` bounds each question."""
        answers = await asyncio.gather(*(self._ask(key, timeout) for key in keys))
        return {r.key: r for r in answers if r is not None}

    async def _ask(self, key: RecordKey, timeout: float) -> Record | None:
        # The same question and reading as failover.dns.authoritative.ask, asynchronously.
        name, rtype = key
        request = dns.message.make_query(name, rtype, use_edns=0, payload=EDNS_PAYLOAD)
        request.flags &= ~dns.flags.RD
        response = await dns.asyncquery.udp(request, self.server, timeout=timeout,
                                            port=self.port, source=self.source)
        if response.flags & dns.flags.TC:
            response = await dns.asyncquery.tcp(request, self.server, timeout=timeout,
                                                port=self.port, source=self.source)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            raise RuntimeError(f"{self.where} answered {dns.rcode.to_text(rcode)} for {name}")
        if not response.flags & dns.flags.AA:
            raise RuntimeError(f"{self.where} is not authoritative for {name}")
        wanted = dns.rdatatype.from_text(rtype)
        for rrset in response.answer:
            if (rrset.rdtype == wanted and rrset.rdclass == dns.rdataclass.IN
                    and rrset.name.to_text().lower() == name):
                return Record(name, rtype, rrset.ttl, tuple(rd.to_text() for rd in rrset))
        return None


class ApiReader:
    """A provider read through its API (Route 53 with boto3), in a thread."""

    def __init__(self, provider: Route53Provider) -> None:
        self.provider = provider
        self.where = f"api {provider.endpoint}"
        self._thread = _OneThread()

    async def read(self, keys: Sequence[RecordKey], timeout: float) -> dict[RecordKey, Record]:
        """The provider's records, read by its own client (its timeout is the probe's)."""
        return await self._thread.call(self.provider.records, keys)


class DnsProbe:
    """What one DNS provider answers for the records that follow the primary.

    Up when the provider answered, whatever it answered: which site the
    answer points at is the policy's question. Facts: ``addresses`` (every
    value answered), ``ttl`` (the smallest), ``records`` ("name type" to
    values and TTL), ``server``.
    """

    kind: ProbeKind = "dns"

    def __init__(self, target: str, keys: Sequence[RecordKey], reader: DnsReader, *,
                 vantage: str, interval: float = 1.0, timeout: float = 1.0) -> None:
        self.target = target
        self.keys = tuple(keys)
        self.reader = reader
        self.vantage = vantage
        self.interval = interval
        self.timeout = timeout

    async def look(self) -> Observation:
        """One question per record, at the provider."""
        return await _observe(self, self._ask)

    async def _ask(self) -> Finding:
        try:
            found = await self.reader.read(self.keys, self.timeout)
        except dns.exception.Timeout:
            return "down", f"no answer from {self.reader.where} in {self.timeout:g}s", {}
        except OSError as exc:
            return "down", f"cannot reach {self.reader.where}: {exc.strerror or exc}", {}
        records = {f"{r.name} {r.rtype}": {"values": list(r.values), "ttl": r.ttl}
                   for r in found.values()}
        facts: Facts = {
            "server": self.reader.where, "records": records,
            "addresses": sorted({v for r in found.values() for v in r.values}),
            "ttl": min((r.ttl for r in found.values()), default=None),
        }
        missing = [f"{name} {rtype}" for name, rtype in self.keys if (name, rtype) not in found]
        return "up", (f"no record for {', '.join(missing)}" if missing else ""), facts

    async def aclose(self) -> None:
        """Nothing is kept open between looks."""


# --- Provider APIs ----------------------------------------------------------------


ApiCheck = Callable[[Ec2ApiConfig | HcloudApiConfig, float], ApiAnswer]


class ApiProbe:
    """A provider's API, called as the site's account: up, down, or refused (a signal)."""

    kind: ProbeKind = "api"

    def __init__(self, target: str, config: Ec2ApiConfig | HcloudApiConfig, *, vantage: str,
                 interval: float = 5.0, timeout: float = 5.0,
                 check: ApiCheck = check_api) -> None:
        self.target = target
        self.config = config
        self.vantage = vantage
        self.interval = interval
        self.timeout = timeout
        self._check = check
        self._thread = _OneThread()

    async def look(self) -> Observation:
        """One blocking API call in a thread."""
        return await _observe(self, self._ask)

    async def _ask(self) -> Finding:
        answer = await self._thread.call(self._check, self.config, self.timeout)
        return answer.status, answer.detail, {"code": answer.code}

    async def aclose(self) -> None:
        """Nothing is kept open between looks."""


# --- Building and scheduling ---------------------------------------------------------


def build_probes(config: FailoverConfig) -> list[Probe]:
    """Every probe the configuration asks for.

    HTTP readiness per site from every vantage point; the database, the
    provider's API (when configured) per site and every DNS provider from the
    first vantage point, which they name. HTTP and DNS leave from a vantage
    point's source address; libpq and the API clients cannot choose one, so
    database and API looks leave from the host's default address.
    """
    watch = config.watch
    deployment = Deployment(config, "watch")
    defaults = WatchConfig().probes  # for a kind the file leaves out

    def settings(kind: ProbeKind) -> ProbeSettings:
        return watch.probes.get(kind) or defaults[kind]

    http = settings("http")
    first = next(iter(watch.vantage_points))
    vantages = [
        VantageClient(name, str(v.source_address) if v.source_address else None,
                      keepalive=max(5.0, 2 * http.interval))
        for name, v in watch.vantage_points.items()
    ]
    probes: list[Probe] = [
        HttpProbe(site, f"{spec.app_url}/readyz", vantage, interval=http.interval,
                  timeout=http.timeout)
        for site, spec in config.sites.items() for vantage in vantages
    ]
    db, api, dns_settings = settings("database"), settings("api"), settings("dns")
    names = {deployment.application_name(site): site for site in config.sites}
    for site, spec in config.sites.items():
        probes.append(DatabaseProbe(site, deployment.endpoint(site), vantage=first,
                                    interval=db.interval, timeout=db.timeout,
                                    sites_by_name=names))
        if spec.api is not None:
            probes.append(ApiProbe(site, spec.api, vantage=first, interval=api.interval,
                                   timeout=api.timeout))
    keys = [r.key for r in deployment.records(next(iter(config.sites)))]
    source = watch.vantage_points[first].source_address
    for name, provider in config.dns_providers.items():
        reader: DnsReader
        if isinstance(provider, Rfc2136Settings):
            reader = AuthoritativeReader(provider.server, provider.port,
                                         str(source) if source else None)
        else:
            timeout = min(provider.timeout, dns_settings.timeout)
            reader = ApiReader(Route53Provider(
                name, provider.model_copy(update={"timeout": timeout})))
        probes.append(DnsProbe(name, keys, reader, vantage=first,
                               interval=dns_settings.interval, timeout=dns_settings.timeout))
    return probes


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of the sorted samples lie (nearest rank)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@dataclass
class ProbeTrack:
    """How one probe keeps its schedule."""

    looks: int = 0
    skipped: int = 0  # slots passed over because the look before ran past them
    lateness_last: float = 0.0  # seconds the last look started after its due time
    lateness_max: float = 0.0


class ProbeScheduler:
    """Every probe on its own drift-free schedule, on one event loop.

    The k-th look of a probe is due at ``start + offset + k * interval``; the
    offsets spread the probes evenly over their interval so that hundreds do
    not fire in the same millisecond. A look that runs a little past its
    successor's due time (a timeout equal to the interval) is followed at
    once, so a dark target costs no extra interval before it is called down;
    one that runs past more than one interval does not make looks pile up:
    the slots it ran past are skipped (counted). How late each look starts,
    against its due time or the end of the look before if that came later,
    is recorded: lateness is what an overloaded loop shows first.
    """

    SAMPLES = 100_000  # lateness samples kept for the percentiles (the most recent)

    def __init__(self, probes: Sequence[Probe], sink: Callable[[Observation], None]) -> None:
        self.probes = tuple(probes)
        self._sink = sink
        self.tracks = [ProbeTrack() for _ in self.probes]
        self._lateness: deque[float] = deque(maxlen=self.SAMPLES)

    async def run(self, stop: asyncio.Event) -> None:
        """Look until ``stop`` is set; then cancel the looks under way and close the probes."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        count = len(self.probes)
        tasks = [
            asyncio.create_task(self._drive(i, start + probe.interval * i / count),
                                name=f"probe {probe.kind} {probe.target}@{probe.vantage}")
            for i, probe in enumerate(self.probes)
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            closed = await asyncio.gather(*(p.aclose() for p in self.probes),
                                          return_exceptions=True)
            for probe, result in zip(self.probes, closed, strict=True):
                if isinstance(result, Exception):
                    logs.log_event(log, "watch.probe_close", kind=probe.kind,
                                   target=probe.target, error=one_line(result))

    async def _drive(self, index: int, first: float) -> None:
        """One probe's looks, each at its slot; never two at once."""
        probe, track = self.probes[index], self.tracks[index]
        loop = asyncio.get_running_loop()
        slot, ready = 0, first
        while True:
            due = first + slot * probe.interval
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            lateness = max(0.0, loop.time() - max(due, ready))
            track.looks += 1
            track.lateness_last = lateness
            track.lateness_max = max(track.lateness_max, lateness)
            self._lateness.append(lateness)
            try:
                observation = await probe.look()
            except Exception as exc:  # a probe broke its contract; its schedule goes on
                observation = Observation(probe.kind, probe.target, probe.vantage, time.time(),
                                          "down", 0.0, f"probe failed: {one_line(exc)}")
            try:
                self._sink(observation)
            except Exception as exc:
                logs.log_event(log, "watch.sink_error", kind=probe.kind, target=probe.target,
                               error=one_line(exc))
            ready = loop.time()
            following = slot + 1
            if ready - (first + following * probe.interval) >= probe.interval:
                # Past more than one slot: the next slot still ahead, the rest skipped.
                following = math.ceil((ready - first) / probe.interval)
                track.skipped += following - slot - 1
            slot = following

    def reset_stats(self) -> None:
        """Forget the looks counted so far (a benchmark's warm-up, a new window)."""
        for track in self.tracks:
            track.looks = track.skipped = 0
            track.lateness_last = track.lateness_max = 0.0
        self._lateness.clear()

    def stats(self) -> dict[str, Any]:
        """Looks, skipped slots and lateness (seconds) over every probe, JSON-ready."""
        ordered = sorted(self._lateness)
        return {
            "probes": len(self.probes),
            "looks": sum(t.looks for t in self.tracks),
            "skipped": sum(t.skipped for t in self.tracks),
            "lateness_p50": _percentile(ordered, 0.50),
            "lateness_p99": _percentile(ordered, 0.99),
            "lateness_max": max((t.lateness_max for t in self.tracks), default=0.0),
        }
