"""A writer: posts to the app through DNS at a steady rate, logging every outcome.

Every acknowledged write is kept with its id and time, every failure with its
cause, so that what was lost can later be found by asking the new primary for
each id, not by trusting the writer. The drill's fuller workload builds on it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from failover.data.postgres import PgEndpoint
from failover.drill.resolver import CachingResolver, ResolveError


@dataclass(frozen=True)
class Ack:
    """A write the app acknowledged (201)."""

    id: str
    at: float  # time.time() when the acknowledgement arrived
    address: str  # where DNS sent the request


@dataclass(frozen=True)
class Failure:
    """A write that was not acknowledged, and why."""

    at: float
    cause: str  # dns, connect, timeout, read-only, 5xx, 4xx
    detail: str


@dataclass
class WriterLog:
    """What a writer saw, in order."""

    acks: list[Ack] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def unavailable_windows(self, until: float | None = None) -> list[tuple[float, float]]:
        """Each stretch in which writes failed, as (start, end).

        A stretch runs from the last acknowledged write before the failures (the
        writer could not tell it apart from an outage that began right after it)
        to the next acknowledged write. Failures before the first ack start at
        the first failure; failures never followed by an ack end at ``until``
        (default: the last failure), so an outage that never ended still counts.
        """
        events = sorted([(a.at, True) for a in self.acks] + [(f.at, False) for f in self.failures])
        windows: list[tuple[float, float]] = []
        start: float | None = None  # start of the current failing stretch
        last_ack: float | None = None
        for at, ok in events:
            if ok:
                if start is not None:
                    windows.append((start, at))
                    start = None
                last_ack = at
            elif start is None:
                start = last_ack if last_ack is not None else at
        if start is not None:
            windows.append((start, until if until is not None else events[-1][0]))
        return windows

    def longest_unavailable(self) -> float:
        """The longest window, in seconds (0 when every write went through)."""
        return max((end - start for start, end in self.unavailable_windows()), default=0.0)


def _cause(response: httpx.Response) -> str:
    if response.status_code == 503 and "read-only" in response.text:
        return "read-only"  # the app's own words for a write that reached a standby
    return "5xx" if response.status_code >= 500 else "4xx"


class Writer:
    """Posts as one author at ``rate`` writes a second, in a thread, until stopped."""

    def __init__(
        self, resolver: CachingResolver, *, port: int, host_header: str, rate: float = 20.0,
        timeout: float = 2.0,
    ) -> None:
        self.resolver = resolver
        self.port = port
        self.host_header = host_header
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.log = WriterLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._client = httpx.Client(timeout=timeout, headers={"Host": host_header})
        self.author_id: str | None = None

    def _url(self, path: str) -> tuple[str, str]:
        address = self.resolver.resolve().addresses[0]
        return address, f"http://{address}:{self.port}{path}"

    def start(self) -> None:
        """Create the author (must succeed) and start writing."""
        _, url = self._url("/v1/users")
        response = self._client.post(url, json={"handle": f"w{uuid.uuid4().hex[:12]}"})
        response.raise_for_status()
        self.author_id = response.json()["id"]
        self._thread.start()

    def stop(self) -> WriterLog:
        """Stop writing; returns the log."""
        self._stop.set()
        self._thread.join()
        self._client.close()
        return self.log

    def wait_acks(self, count: int, timeout: float) -> None:
        """Wait until at least ``count`` more writes have been acknowledged."""
        target = len(self.log.acks) + count
        deadline = time.monotonic() + timeout
        while len(self.log.acks) < target:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise TimeoutError(f"only {len(self.log.acks)} of {target} writes acknowledged")
            self._stop.wait(0.02)

    def _one(self, n: int) -> None:
        try:
            address, url = self._url("/v1/posts")
        except ResolveError as exc:
            self.log.failures.append(Failure(time.time(), "dns", str(exc)))
            return
        try:
            response = self._client.post(url, json={"author_id": self.author_id,
                                                    "text": f"write {n}"})
        except httpx.TimeoutException as exc:
            self.log.failures.append(Failure(time.time(), "timeout", str(exc)))
            return
        except httpx.HTTPError as exc:  # refused, reset, closed mid-answer
            self.log.failures.append(Failure(time.time(), "connect", str(exc)))
            return
        if response.status_code == 201:
            try:
                post_id = response.json()["id"]
            except (ValueError, KeyError, TypeError) as exc:
                self.log.failures.append(Failure(time.time(), "bad-answer", repr(exc)))
                return
            self.log.acks.append(Ack(post_id, time.time(), address))
        else:
            self.log.failures.append(
                Failure(time.time(), _cause(response), response.text[:200])
            )

    def _run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._one(n)
            n += 1
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: don't burst to catch up


def missing_posts(endpoint: PgEndpoint, ids: Sequence[str]) -> list[str]:
    """The acknowledged post ids that the database behind ``endpoint`` does not have."""
    with endpoint.connect(timeout=5) as conn:
        rows = conn.execute(
            "SELECT id::text FROM posts WHERE id = ANY(%s::uuid[])", (list(ids),)
        ).fetchall()
    present = {r[0] for r in rows}
    return [i for i in ids if i not in present]
