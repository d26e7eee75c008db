"""The drill's workload: users who post, upload media and read through DNS, and what they saw.

Each user has its own thread, HTTP client and caching resolver, so their caches
expire at different moments, as a population of clients' resolvers would. Every
request lands in a `WorkloadLog` (``events``) with its outcome, its cause when it
failed, the address DNS gave, the site that answered and its latency.
Acknowledged writes are kept with their ids, so that what was lost can later
be found by asking the new primary for each id (`missing_posts`,
`missing_media`), not by trusting the workload.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from psycopg import sql

from failover.data.postgres import PgEndpoint
from failover.drill.events import WRITE_KINDS, acked_write
from failover.drill.events import Event as Event  # re-exported: the drill imports it from here
from failover.drill.events import WorkloadLog as WorkloadLog  # likewise
from failover.drill.resolver import CachingResolver, ResolveError
from failover.exceptions import FailoverError

DETAIL_CHARS = 200
# The reference app names the site that answered in this header (infra/refapp/api.py;
# not imported: the drill need not load the app's server code to read one header).
SITE_HEADER = "X-Refapp-Site"


@dataclass(frozen=True)
class WorkloadSpec:
    """How much traffic, from how many users, in which mix."""

    rate: float = 30.0  # requests per second, all users together
    users: int = 4  # each with its own thread and CachingResolver
    write_share: float = 0.6  # share of requests that are writes
    media_share: float = 0.1  # share of writes that are a media upload, then a post using it
    media_bytes: int = 8192
    timeout: float = 2.0  # per request: a frozen server makes requests hang until it

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.rate) and self.rate > 0):
            problems.append(f"rate must be a positive number of requests a second, "
                            f"not {self.rate!r}")
        if not _whole_at_least(self.users, 1):
            problems.append(f"users must be a whole number of at least 1, not {self.users!r}")
        for name in ("write_share", "media_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:  # NaN fails this too
                problems.append(f"{name} must be between 0 and 1, not {share!r}")
        if not _whole_at_least(self.media_bytes, 1):
            problems.append(f"media_bytes must be a whole number of at least 1, "
                            f"not {self.media_bytes!r}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            problems.append(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if problems:
            raise ValueError("workload spec: " + "; ".join(problems))


def _whole_at_least(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _cause(response: httpx.Response) -> str:
    if response.status_code == 503 and "read-only" in response.text:
        return "read-only"  # the app's own words for a write that reached a standby
    return "5xx" if response.status_code >= 500 else "4xx"


def _judge(
    kind: str, response: httpx.Response, wanted: str | None
) -> tuple[str | None, str | None, str]:
    """(cause or None, id of what was written, detail) for one answer of the app."""
    expected = 201 if kind in WRITE_KINDS else 200
    if response.status_code != expected:
        if response.status_code >= 400:
            return _cause(response), None, response.text
        return "bad-answer", None, f"HTTP {response.status_code}: {response.text}"
    try:
        body = response.json()
        if kind in WRITE_KINDS:
            return None, str(body["id"]), ""
        if kind == "read" and str(body["id"]) != wanted:
            return "bad-answer", None, f"asked for post {wanted}, got {body['id']}"
        if kind == "timeline" and not isinstance(body["posts"], list):
            return "bad-answer", None, f"timeline without a list of posts: {response.text}"
    except (ValueError, KeyError, TypeError) as exc:
        return "bad-answer", None, f"{exc!r}: {response.text}"
    return None, None, ""


@dataclass
class _User:
    """One simulated user: its own resolver, client, random stream and posts."""

    index: int
    resolver: CachingResolver
    client: httpx.Client
    rng: random.Random
    id: str = ""
    posts: list[str] = field(default_factory=list)  # ids of its acknowledged posts


class Workload:
    """``spec.users`` users, each in a thread, writing and reading at ``spec.rate`` in all.

    Each user paces itself to ``rate / users`` operations a second, starting at a
    random moment within its first interval, and never bursts to catch up when
    behind (a frozen server slows the workload down as it would slow real users).
    An operation is one request, except a media write: an upload and then a post
    that references it (no post when the upload failed).
    """

    def __init__(
        self, spec: WorkloadSpec, resolver: Callable[[], CachingResolver], *, port: int,
        host_header: str, seed: int | None = None,
    ) -> None:
        self.spec = spec
        self.log = WorkloadLog()
        self._new_resolver = resolver
        self._port = port
        self._host_header = host_header
        self._rng = random.Random(seed)
        self._users: list[_User] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._changed = threading.Condition()  # guards appends to the log and what follows
        self._posts: list[str] = []  # ids of everyone's acknowledged posts
        self._running = 0  # user threads still running
        self._crash: BaseException | None = None
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Create the users (each must succeed), make each follow another, start the threads."""
        if self._started:
            raise RuntimeError("a workload can be started only once")
        self._started = True
        try:
            for n in range(self.spec.users):
                user = _User(n, self._new_resolver(),
                             httpx.Client(timeout=self.spec.timeout,
                                          headers={"Host": self._host_header}),
                             random.Random(self._rng.getrandbits(64)))
                self._users.append(user)
                handle = f"drill_{uuid.uuid4().hex[:16]}"
                user.id = str(self._setup(user, "/v1/users", {"handle": handle}, (201,))["id"])
            if len(self._users) > 1:  # each follows the next, so timelines have content
                for user, followee in zip(self._users, self._users[1:] + self._users[:1],
                                          strict=True):
                    self._setup(user, f"/v1/users/{user.id}/follow",
                                {"followee_id": followee.id}, (200, 201))
        except BaseException:
            self._close()
            raise
        self._running = len(self._users)
        for user in self._users:
            thread = threading.Thread(target=self._run, args=(user,),
                                      name=f"workload-user-{user.index}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> WorkloadLog:
        """Stop and join every user's thread, close the clients; returns the log. Idempotent."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._close()
        return self.log

    def wait_acks(self, count: int, timeout: float) -> None:
        """Wait until at least ``count`` more writes (posts or media) have been acknowledged."""
        self.wait_events(acked_write, count, timeout, what="writes acknowledged")

    def wait_events(self, matching: Callable[[Event], bool], count: int, timeout: float, *,
                    what: str = "matching events") -> None:
        """Wait until at least ``count`` more events for which ``matching`` is true are logged.

        Raises TimeoutError, with what was seen, when they do not come in ``timeout``
        seconds or every user's thread has ended; RuntimeError when a thread failed.
        """
        if not self._started:
            raise RuntimeError("the workload has not been started")
        found = 0
        with self._changed:
            seen = len(self.log.events)  # the workload appends only under this lock

            def done() -> bool:
                nonlocal found, seen
                events = self.log.events
                found += sum(1 for e in events[seen:] if matching(e))
                seen = len(events)
                return found >= count or self._running == 0 or self._crash is not None

            self._changed.wait_for(done, timeout)
            if self._crash is not None:
                raise RuntimeError(f"a workload thread failed: {self._crash!r}") from self._crash
            if found < count:
                why = "the workload has stopped" if self._running == 0 else f"in {timeout:g} s"
                raise TimeoutError(
                    f"only {found} of {count} more {what} ({why}); {seen} requests in all, "
                    f"failures by cause: {self.log.failures_by_cause() or 'none'}"
                )

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            for user in self._users:
                user.client.close()

    def _setup(self, user: _User, path: str, body: dict[str, Any],
               expected: tuple[int, ...]) -> dict[str, Any]:
        """POST ``body`` to ``path`` while setting up; anything but ``expected`` is an error."""
        try:
            address = user.resolver.resolve().addresses[0]
        except ResolveError as exc:
            raise FailoverError(f"workload setup: cannot resolve the app: {exc}") from exc
        url = f"http://{address}:{self._port}{path}"
        try:
            response = user.client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise FailoverError(
                f"workload setup: POST {url} (Host {self._host_header}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code not in expected:
            raise FailoverError(
                f"workload setup: POST {url} (Host {self._host_header}) answered "
                f"{response.status_code}: {response.text[:DETAIL_CHARS]}"
            )
        try:
            answer: dict[str, Any] = response.json()
        except ValueError as exc:
            raise FailoverError(
                f"workload setup: POST {url} answered {response.status_code} with no JSON: "
                f"{response.text[:DETAIL_CHARS]}"
            ) from exc
        return answer

    def _run(self, user: _User) -> None:
        interval = self.spec.users / self.spec.rate
        try:
            if self._stop.wait(user.rng.uniform(0, interval)):  # users start out of step
                return
            next_at = time.monotonic()
            while not self._stop.is_set():
                self._operation(user)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()  # behind: don't burst to catch up
        except BaseException as exc:
            with self._changed:
                self._crash = self._crash or exc
            raise
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def _operation(self, user: _User) -> None:
        """One write or read, chosen by the spec's shares."""
        rng = user.rng
        if rng.random() < self.spec.write_share:
            text = f"drill user {user.index} at {time.time():.3f}"
            if rng.random() < self.spec.media_share:
                files = {"file": ("drill.bin", rng.randbytes(self.spec.media_bytes),
                                  "application/octet-stream")}
                media = self._request(user, "media", "POST", "/v1/media", files=files,
                                      data={"owner_id": user.id})
                if media.ok:
                    self._request(user, "post", "POST", "/v1/posts", json={
                        "author_id": user.id, "text": text, "media_id": media.id})
            else:
                self._request(user, "post", "POST", "/v1/posts",
                              json={"author_id": user.id, "text": text})
            return
        post_id = self._pick_post(user)
        if post_id is not None and rng.random() < 0.5:
            self._request(user, "read", "GET", f"/v1/posts/{post_id}", wanted=post_id)
        else:
            self._request(user, "timeline", "GET", f"/v1/users/{user.id}/timeline")

    def _pick_post(self, user: _User) -> str | None:
        """A post acknowledged earlier: half the time the user's own, else anyone's."""
        if user.posts and user.rng.random() < 0.5:
            return user.rng.choice(user.posts)
        with self._changed:
            return user.rng.choice(self._posts) if self._posts else None

    def _request(self, user: _User, kind: str, method: str, path: str, *,
                 wanted: str | None = None, **kwargs: Any) -> Event:
        """Send one request through the user's resolver and client; log and return its event."""
        started = time.monotonic()
        address: str | None = None
        cause: str | None
        written: str | None = None
        site: str | None = None
        try:
            address = user.resolver.resolve().addresses[0]
            response = user.client.request(method, f"http://{address}:{self._port}{path}",
                                           **kwargs)
        except ResolveError as exc:
            cause, detail = "dns", str(exc)
        except httpx.TimeoutException as exc:
            cause, detail = "timeout", f"{type(exc).__name__}: {exc}"
        except httpx.HTTPError as exc:  # refused, reset, closed mid-answer
            cause, detail = "connect", f"{type(exc).__name__}: {exc}"
        else:
            cause, written, detail = _judge(kind, response, wanted)
            site = response.headers.get(SITE_HEADER)
        event = Event(time.time(), kind, cause is None, cause, address,
                      time.monotonic() - started, written, detail[:DETAIL_CHARS], user.index,
                      site)
        with self._changed:
            self.log.append(event)
            if event.ok and kind == "post" and written is not None:
                self._posts.append(written)
                user.posts.append(written)
            self._changed.notify_all()
        return event


def _missing(endpoint: PgEndpoint, table: str, ids: Sequence[str]) -> list[str]:
    """The ids that ``table`` of the database behind ``endpoint`` does not have."""
    query = sql.SQL("SELECT id::text FROM {} WHERE id = ANY(%s::uuid[])").format(
        sql.Identifier(table)
    )
    with endpoint.connect(timeout=5) as conn:
        rows = conn.execute(query, (list(ids),)).fetchall()
    present = {r[0] for r in rows}
    return [i for i in ids if i not in present]


def missing_posts(endpoint: PgEndpoint, ids: Sequence[str]) -> list[str]:
    """The acknowledged post ids that the database behind ``endpoint`` does not have."""
    return _missing(endpoint, "posts", ids)


def missing_media(endpoint: PgEndpoint, ids: Sequence[str]) -> list[str]:
    """The acknowledged media ids that the database behind ``endpoint`` does not have."""
    return _missing(endpoint, "media", ids)
