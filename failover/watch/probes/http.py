"""A site's app readiness over HTTP, from vantage points that each have their own address."""

from __future__ import annotations

import os
import ssl

import httpx

from failover.watch.probes.contract import Facts, Finding, Looking, observe, one_line
from failover.watch.signals import Observation, ProbeKind


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


class HttpProbe(Looking):
    """A site's app readiness (``GET {app_url}/readyz``: 200 is up) from one vantage point."""

    kind: ProbeKind = "http"

    def __init__(self, target: str, url: str, vantage: VantageClient, *,
                 interval: float = 1.0, timeout: float = 1.0) -> None:
        super().__init__(target, vantage.name, interval, timeout)
        self.url = url
        self._vantage = vantage
        self._client = vantage.acquire()

    async def look(self) -> Observation:
        """One GET of the readiness URL."""
        return await observe(self, self._ask)

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
