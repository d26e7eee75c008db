"""Our small typed wrapper over etcd's v3 API: keys, leases, transactions, one error.

The client is etcd3gw, which speaks to etcd's gRPC gateway: JSON over plain
HTTP, one blocking request per call. We chose it over aetcd (asyncio over
gRPC) because our code is threaded and synchronous (httpx, psycopg): aetcd
would need an event loop in a thread of its own and a bridge into it for
every call, and grpcio's runtime costs each of the three controllers some
20 MiB more than etcd3gw's ~1 MiB next to what the controller already loads
(requests, which it brings, is loaded by our dependencies anyway). Patroni
itself talks to etcd v3 through this same gateway. Every request takes a
timeout, so one endpoint that does not answer costs a known, bounded time
before the next one is tried. Checked against Debian's etcd 3.4 (3.4.23):
its gateway serves ``/v3/`` (and the deprecated ``/v3beta/``; ``/v3alpha/``
is gone), where put, get, range, delete, txn and lease grant, keep-alive,
time-to-live and revoke all work; we name ``/v3/`` rather than ask
``/version`` first, and so need etcd 3.4 or later.

Keys live under ``/failover/<name>/``; callers name them relative to it.

Retry policy (Patroni's ``retry_timeout``): a call tries the endpoints in
turn, starting with the one that answered last, each request bounded by an
equal share of ``retry_timeout``; anything that is not an answer from etcd
(refused, no answer in time, a member without a leader) moves on to the
next. After a round that reached no one it pauses a little and goes round
again while a whole request still fits in ``retry_timeout``: the survivors
of a lost member need a second or two to elect a new leader, and a call
rides that out. When none answers, one ``ClusterUnavailable`` names every
endpoint and the last thing it said. Retrying is safe for reads, puts,
deletes and lease renewals; a grant retried may leave an unused lease behind,
which expires by itself. A conditional write (``create``, ``swap``) whose
first try timed out after etcd applied it fails on the retry: its
``Outcome.entry`` is then the entry the first try wrote, which the caller
can recognise by its lease or value.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions
from etcd3gw.client import Etcd3Client
from etcd3gw.lease import Lease

from failover.cluster.config import DEFAULT_PORT, ClusterConfig
from failover.cluster.exceptions import ClusterUnavailable, LeaseNotFound
from failover.cluster.ops import Compare, Delete, Put, TxnResult

T = TypeVar("T")
API_PATH = "/v3/"  # etcd >= 3.4; /v3beta/ is deprecated there and /v3alpha/ gone
KEY_PREFIX = "/failover/"
LEASE_NOT_FOUND = "requested lease not found"
ROUND_PAUSE = 0.1  # seconds between two rounds of the endpoints that reached no one


@dataclass(frozen=True)
class Entry:
    """One key as etcd holds it.

    ``create_revision`` is the cluster's revision when the key was created
    (it stays while the key lives and only grows from one life to the next);
    ``mod_revision`` is the revision of its last write.
    """

    key: str  # relative to the deployment's prefix
    value: str
    create_revision: int
    mod_revision: int
    lease: int = 0  # 0: the key has no lease


@dataclass(frozen=True)
class Outcome:
    """What a conditional write did: whether it wrote, and the key as it is now.

    ``entry`` is what was written when it succeeded, otherwise what stood in
    the way (None: the key is absent).
    """

    succeeded: bool
    entry: Entry | None


def _after(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (a range's end)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])  # our prefixes are ASCII: never 0xff


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(data: str) -> str:
    return base64.b64decode(data).decode()


def _reason(exc: BaseException, timeout: float) -> str:
    """A few words for what one endpoint did instead of answering."""
    if isinstance(exc, exceptions.ConnectionTimeoutError):
        return f"no answer in {timeout:.2g}s"
    detail = getattr(exc, "detail_text", None) or str(exc)
    try:  # etcd's own error, as the gateway returns it: {"error": ..., "code": ...}
        return str(json.loads(detail)["message"])
    except (ValueError, TypeError, KeyError):
        pass
    if "refused" in detail.lower():
        return "connection refused"
    return type(exc).__name__ if len(detail) > 120 else detail


class EtcdCluster:
    """The etcd cluster, reached through any of its endpoints; keys under ``/failover/<name>/``.

    A call gives up after ``retry_timeout`` seconds; one request to one
    endpoint gets ``retry_timeout / len(endpoints)`` of them (``timeout``).
    """

    def __init__(
        self, endpoints: Sequence[str], name: str, retry_timeout: float = 2.0, *,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not endpoints:
            raise ValueError("an etcd cluster needs at least one endpoint")
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self.prefix = f"{KEY_PREFIX}{name}/"
        self.retry_timeout = retry_timeout
        self.timeout = retry_timeout / len(self.endpoints)
        self._clock, self._sleep = clock, sleep
        self._clients = [self._client(url) for url in self.endpoints]
        self._first = 0  # the endpoint that answered last is tried first
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: ClusterConfig) -> EtcdCluster:
        """The cluster ``watch.cluster`` names."""
        return cls(config.endpoints, config.name, config.retry_timeout)

    def _client(self, url: str) -> Etcd3Client:
        parts = urlsplit(url)
        session = requests.Session()
        # Members are reached directly: a proxy or .netrc from the environment is not for them.
        session.trust_env = False
        return Etcd3Client(host=parts.hostname or "", port=parts.port or DEFAULT_PORT,
                           protocol=parts.scheme, timeout=self.timeout, api_path=API_PATH,
                           session=session)

    def _call(self, what: str, request: Callable[[Etcd3Client], T]) -> T:
        """``request`` through the endpoints in turn until one answers or time is up."""
        with self._lock:
            first = self._first
        count = len(self._clients)
        deadline = self._clock() + self.retry_timeout
        failures: dict[int, str] = {}
        for attempt in itertools.count():
            i = (first + attempt) % count
            if attempt >= count:  # every endpoint was tried once: again only while time is left
                if i == first:
                    self._sleep(ROUND_PAUSE)
                if self._clock() + self.timeout > deadline:
                    break
            try:
                result = request(self._clients[i])
            except exceptions.Etcd3Exception as exc:
                if LEASE_NOT_FOUND in (exc.detail_text or ""):
                    raise LeaseNotFound(f"etcd has no such lease for {what} (it expired or "
                                        "was revoked)") from None
                failures[i] = _reason(exc, self.timeout)
            except (requests.RequestException, ValueError) as exc:  # e.g. a non-JSON answer
                failures[i] = _reason(exc, self.timeout)
            else:
                with self._lock:
                    self._first = i
                return result
        tried = ", ".join(f"{url} ({failures[i]})" for i, url in enumerate(self.endpoints))
        raise ClusterUnavailable(
            f"etcd did not answer {what} in {self.retry_timeout:g}s: tried {tried}; check that "
            "most of its members run and that watch.cluster.endpoints names them")

    def _key(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    def _entry(self, kv: dict[str, Any], value: str | None = None) -> Entry:
        """An Entry from the gateway's KeyValue (base64 key and value, numbers as text)."""
        raw_key = kv["key"]
        full = raw_key.decode() if isinstance(raw_key, bytes) else _text(raw_key)
        return Entry(
            key=full.removeprefix(self.prefix),
            value=value if value is not None else _text(kv.get("value", "")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            lease=int(kv.get("lease", 0)),
        )

    # -- keys --------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The key's value and revisions, or None when it is absent."""
        found = self._call(f"get {key}", lambda c: c.get(self._key(key), metadata=True))
        if not found:
            return None
        value, kv = found[0]
        return self._entry(dict(kv), value.decode())

    def range(self, prefix: str = "", *, start: str | None = None, limit: int = 0,
              newest_first: bool = False, by: Literal["key", "create"] = "key",
              keys_only: bool = False) -> list[Entry]:
        """Every key that starts with ``prefix`` (relative to the deployment's), by key.

        ``start``: only keys from this one on (it starts with ``prefix``); ``by``:
        ordered by key or by creation (create_revision); ``newest_first``: the
        other way round; ``limit``: at most that many (0: all); ``keys_only``:
        values left out (as "").
        """
        request = self._span(prefix, start)
        request.update(sort_order="DESCEND" if newest_first else "ASCEND",
                       sort_target=by.upper(), limit=limit, keys_only=keys_only)
        answer = self._call(f"range {prefix or '(all)'}",
                            lambda c: c.post(c.get_url("/kv/range"), json=request))
        return [self._entry(kv) for kv in answer.get("kvs", [])]

    def count(self, prefix: str = "") -> int:
        """How many keys start with ``prefix``."""
        request = {**self._span(prefix), "count_only": True}
        answer = self._call(f"count {prefix or '(all)'}",
                            lambda c: c.post(c.get_url("/kv/range"), json=request))
        return int(answer.get("count", 0))

    def _span(self, prefix: str, start: str | None = None) -> dict[str, Any]:
        """A range request's key and range_end: the keys under ``prefix`` (from ``start``)."""
        if not (self.prefix + prefix).isascii():
            raise ValueError(f"a range's prefix must be ASCII: {prefix!r}")
        if start is not None and not start.startswith(prefix):
            raise ValueError(f"a range's start {start!r} must start with its prefix {prefix!r}")
        return {"key": _b64(self._key(start if start is not None else prefix)),
                "range_end": _b64(_after(self._key(prefix)))}

    def put(self, key: str, value: str, lease: int | None = None) -> int:
        """Write the key (bound to ``lease``: it goes when the lease does); returns the revision."""
        request: dict[str, Any] = {"key": _b64(self._key(key)), "value": _b64(value.encode())}
        if lease:
            request["lease"] = lease
        answer = self._call(f"put {key}", lambda c: c.post(c.get_url("/kv/put"), json=request))
        return int(answer["header"]["revision"])

    def delete(self, key: str) -> bool:
        """Remove the key; whether it was there."""
        return self._call(f"delete {key}", lambda c: c.delete(self._key(key)))

    def create(self, key: str, value: str, lease: int | None = None) -> Outcome:
        """Write the key only if it is absent (its create_revision is 0)."""
        return self._put_if(key, value, lease, "CREATE", "create_revision", 0)

    def swap(self, key: str, value: str, mod_revision: int, lease: int | None = None) -> Outcome:
        """Write the key only if its last write was at ``mod_revision`` (0: only if absent)."""
        return self._put_if(key, value, lease, "MOD", "mod_revision", mod_revision)

    def _put_if(self, key: str, value: str, lease: int | None, target: str, field: str,
                revision: int) -> Outcome:
        """One transaction: compare; put on success; either way, read the key as it is then."""
        encoded = _b64(self._key(key))
        put: dict[str, Any] = {"key": encoded, "value": _b64(value.encode())}
        if lease:
            put["lease"] = lease
        read = {"request_range": {"key": encoded}}
        txn = {"compare": [{"key": encoded, "result": "EQUAL", "target": target,
                            field: revision}],
               "success": [{"request_put": put}, read], "failure": [read]}
        answer: dict[str, Any] = dict(self._call(f"{target.lower()}-compare put {key}",
                                                 lambda c: c.transaction(txn)))
        kvs = answer["responses"][-1]["response_range"].get("kvs", [])
        # proto3 JSON leaves a false `succeeded` out
        return Outcome(bool(answer.get("succeeded", False)),
                       self._entry(kvs[0]) if kvs else None)

    def txn(self, compares: Sequence[Compare], success: Sequence[Put | Delete],
            failure: Sequence[Put | Delete] = ()) -> TxnResult:
        """One transaction: if every condition holds, the ``success`` ops, else ``failure``'s.

        All or nothing, at one revision. etcd refuses a transaction that writes
        one key twice. Retried after a first try that etcd applied but whose
        answer was lost, its conditions usually fail: a caller that must know
        reads back what it wrote (see the module's retry policy).
        """
        request = {"compare": [self._compare(c) for c in compares],
                   "success": [self._op(op) for op in success],
                   "failure": [self._op(op) for op in failure]}
        keys = ", ".join(sorted({op.key for op in success})) or "nothing"
        answer: dict[str, Any] = dict(self._call(f"a transaction writing {keys}",
                                                 lambda c: c.transaction(request)))
        # proto3 JSON leaves a false `succeeded` out
        return TxnResult(bool(answer.get("succeeded", False)),
                         int(answer["header"]["revision"]))

    def holds(self, puts: Sequence[Put]) -> bool:
        """Whether each key holds what its put writes: a transaction whose answer was lost
        (or that a retry found already applied) did land."""
        return all((entry := self.get(put.key)) is not None and entry.value == put.value
                   for put in puts)

    def _compare(self, compare: Compare) -> dict[str, Any]:
        field = {"VALUE": "value", "VERSION": "version", "CREATE": "create_revision",
                 "MOD": "mod_revision"}[compare.target]
        against = compare.against
        request: dict[str, Any] = {
            "key": _b64(self._key(compare.key)), "result": compare.result,
            "target": compare.target,
            field: _b64(str(against).encode()) if compare.target == "VALUE" else int(against)}
        if compare.prefix:
            request["range_end"] = self._span(compare.key)["range_end"]
        return request

    def _op(self, op: Put | Delete) -> dict[str, Any]:
        if isinstance(op, Put):
            put: dict[str, Any] = {"key": _b64(self._key(op.key)),
                                   "value": _b64(op.value.encode())}
            if op.lease:
                put["lease"] = op.lease
            return {"request_put": put}
        delete = {"key": _b64(self._key(op.key))}
        if op.prefix:
            delete["range_end"] = self._span(op.key)["range_end"]
        elif op.end is not None:
            delete["range_end"] = _b64(self._key(op.end))
        return {"request_delete_range": delete}

    def revision(self) -> int:
        """The cluster's current revision (a linearizable read: no member's stale view)."""
        request = {"key": _b64(self.prefix.encode()), "count_only": True}
        answer = self._call("the current revision",
                            lambda c: c.post(c.get_url("/kv/range"), json=request))
        return int(answer["header"]["revision"])

    # -- leases ------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; returns its id."""
        return self._call(f"grant a {ttl}s lease", lambda c: c.lease(ttl).id)

    def refresh(self, lease: int) -> int:
        """Renew the lease for its whole TTL; returns that TTL, or 0 when it is gone."""
        ttl = self._call(f"renew lease {lease:x}", lambda c: Lease(lease, c).refresh())
        return max(ttl, 0)

    def ttl(self, lease: int) -> int:
        """Seconds the lease has left; 0 when it is gone."""
        # Not etcd3gw's Lease.ttl(): the gateway leaves out a field that is zero, as TTL is
        # in a lease's last second, and that one reads it unconditionally (KeyError).
        answer = self._call(f"ask lease {lease:x}'s TTL", lambda c: c.post(
            c.get_url("/kv/lease/timetolive"), json={"ID": lease}))
        return max(int(answer.get("TTL", 0)), 0)

    def revoke(self, lease: int) -> None:
        """End the lease now: every key bound to it goes. A lease already gone is no error."""
        with contextlib.suppress(LeaseNotFound):
            self._call(f"revoke lease {lease:x}", lambda c: Lease(lease, c).revoke())
