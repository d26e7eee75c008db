"""The signed webhook: how a notice reaches the controller over HTTP, and how we sign.

The scheme is the one Stripe and GitHub use, with our header names. A request
carries two headers::

    X-Failover-Timestamp: 1795521600
    X-Failover-Signature: sha256=<hex of HMAC-SHA256(secret, b"1795521600." + body)>

The timestamp is whole Unix seconds. The receiver recomputes the HMAC over the
exact bytes it received and compares in constant time; refuses a timestamp
older than ``max_signature_age`` (stale) or more than ``MAX_SKEW`` seconds
ahead of its clock; and remembers every accepted signature while it is fresh,
so the same request sent twice is refused (replayed). A sender that retries
signs again, with a new timestamp.

The body of a notice (``POST /v1/signals``)::

    {"type": "termination", "provider": "aws",
     "deadline": "2026-11-24T12:00:00Z",      (or Unix seconds, or +2h)
     "text": "free text", "id": "the sender's own reference (optional)",
     "source": "webhook"}                      (optional: webhook, cli, mailbox, api)
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import math
import os
import re
import threading
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from failover.exceptions import ConfigError, FailoverError
from failover.secretfiles import read_private
from failover.watch.signals import DEADLINE_PROBLEMS, DeadlineProblem, Notice, NoticeSource

if TYPE_CHECKING:  # the agent signs too, and has no use for these modules' imports
    import httpx

    from failover.config import WatchConfig

TIMESTAMP_HEADER = "X-Failover-Timestamp"
SIGNATURE_HEADER = "X-Failover-Signature"
SCHEME = "sha256="
SECRET_ENV = "FAILOVER_WEBHOOK_SECRET"
NOTIFY_SECRET_ENV = "FAILOVER_NOTIFY_SECRET"
# How far a sender's clock may run ahead of ours before its timestamp is refused.
MAX_SKEW = 30.0
# A notice is a few hundred bytes; anything far larger is not one of ours.
MAX_BODY_BYTES = 64 * 1024
SIGNAL_TYPES = ("termination",)
BAD_BODY = frozenset({"malformed"}) | DEADLINE_PROBLEMS  # signed, but wrong
_SOURCES: dict[str, NoticeSource] = {s: s for s in get_args(NoticeSource)}

Reason = Literal["unsigned", "bad-signature", "stale", "replayed", "malformed"] | DeadlineProblem

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_STAMP = re.compile(r"[0-9]{1,12}")
_RELATIVE = re.compile(r"\+\s*(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SignalRefused(FailoverError):
    """A request to the controller was refused; ``reason`` says why in one word."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason

    @property
    def http_status(self) -> int:
        """The answer's status: 400 for a well-signed body that makes no sense, else 401."""
        return 400 if self.reason in BAD_BODY else 401

    def to_dict(self) -> dict[str, str]:
        """The answer's JSON body."""
        return {"reason": self.reason, "error": str(self)}


def _mac(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body`` at ``timestamp`` (default: now)."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: SCHEME + _mac(secret, stamp, body)}


class SeenSignatures(Protocol):
    """Where accepted signatures are remembered while fresh (memory, or the controller's store)."""

    def first_use(self, signature: str, timestamp: float, *, now: float,
                  max_age: float) -> bool:
        """Remember ``signature``; False when it was already seen (a replay)."""
        ...


class ReplayGuard:
    """The signatures accepted while they are still fresh, in memory, to refuse a second use.

    The controller keeps them in its store instead (``WatchStore.first_use``), so
    that they outlive a restart; this one serves clients and tests.

    Memory stays bounded: a signature is forgotten once its timestamp is older
    than ``max_age``, when its request would be refused as stale anyway.
    Thread-safe: the HTTP API may verify on several threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._by_age: list[tuple[float, str]] = []  # a heap, oldest timestamp first

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def first_use(self, signature: str, timestamp: float, *, now: float,
                  max_age: float) -> bool:
        """Remember ``signature``; False when it was already seen (a replay)."""
        with self._lock:
            while self._by_age and self._by_age[0][0] < now - max_age:
                self._seen.discard(heapq.heappop(self._by_age)[1])
            if signature in self._seen:
                return False
            self._seen.add(signature)
            heapq.heappush(self._by_age, (timestamp, signature))
            return True


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, *, now: float,
           max_age: float, guard: SeenSignatures, whose: str = "this controller's") -> None:
    """Accept a signed request once, or raise SignalRefused saying why.

    ``whose`` names the secret in the refusal (the controller's, an agent's).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp = lowered.get(TIMESTAMP_HEADER.lower())
    given = lowered.get(SIGNATURE_HEADER.lower())
    if stamp is None or given is None:
        missing = " and ".join(h for h, v in ((TIMESTAMP_HEADER, stamp),
                                               (SIGNATURE_HEADER, given)) if v is None)
        raise SignalRefused("unsigned", f"unsigned request: no {missing} header")
    stamp, given = stamp.strip(), given.strip().lower()
    digest = given.removeprefix(SCHEME)
    well_formed = given.startswith(SCHEME) and _HEX_DIGEST.fullmatch(digest)
    if not _STAMP.fullmatch(stamp) or not well_formed:
        raise SignalRefused(
            "bad-signature", f"bad signature headers: expected {TIMESTAMP_HEADER}: <unix "
            f"seconds> and {SIGNATURE_HEADER}: sha256=<64 hex digits>")
    # The HMAC first: nothing about an unauthenticated request's age is told back.
    if not hmac.compare_digest(digest, _mac(secret, stamp, body)):
        raise SignalRefused("bad-signature", f"bad signature: not signed with {whose} "
                            "secret, or the body was changed on the way")
    age = now - int(stamp)
    if age > max_age:
        raise SignalRefused("stale", f"stale request: signed {age:.0f}s ago, more than the "
                            f"{max_age:g}s allowed; sign it again")
    if -age > MAX_SKEW:
        raise SignalRefused("stale", f"request signed {-age:.0f}s in the future (more than "
                            f"{MAX_SKEW:g}s ahead of this clock): check the sender's clock")
    if not guard.first_use(digest, int(stamp), now=now, max_age=max_age):
        raise SignalRefused("replayed", "replayed request: this signature was already used; "
                            "a sender that retries must sign again")


def _read_secret(env: str, file: Path | None, setting: str, what: str) -> bytes | None:
    """A secret from ``$env``, else from its 0600 file; None when neither is given."""
    from_env = os.environ.get(env, "").strip()
    if from_env:
        return from_env.encode()
    if file is None:
        return None
    secret = read_private(file, what).strip()
    if not secret:
        raise ConfigError(f"{what} {file} ({setting}) is empty: write a secret into it "
                          "(e.g. openssl rand -hex 32)")
    return secret.encode()


def load_secret(config: WatchConfig) -> bytes:
    """The webhook's shared secret: $FAILOVER_WEBHOOK_SECRET, else the 0600 secret file."""
    secret = _read_secret(SECRET_ENV, config.webhook_secret_file, "watch.webhook_secret_file",
                          "webhook secret file")
    if secret is None:
        raise ConfigError(
            f"no webhook secret: set ${SECRET_ENV} or watch.webhook_secret_file (a 0600 "
            "file, e.g. from: openssl rand -hex 32)")
    return secret


def load_notify_secret(config: WatchConfig) -> bytes | None:
    """The secret that signs notifications (None when ``watch.notify_url`` is not set).

    It is never the webhook's: whoever receives notifications could then sign
    signals of their own, and the controller would obey them.
    """
    if config.notify_url is None:
        return None
    secret = _read_secret(NOTIFY_SECRET_ENV, config.notify_secret_file,
                          "watch.notify_secret_file", "notify secret file")
    if secret is None:
        raise ConfigError(
            f"watch.notify_url is set but no secret signs the notifications: set "
            f"${NOTIFY_SECRET_ENV} or watch.notify_secret_file (a 0600 file, e.g. from: "
            "openssl rand -hex 32), and give the receiver the same secret")
    if hmac.compare_digest(secret, load_secret(config)):
        raise ConfigError(
            "the notify secret is the webhook secret: receivers of notifications could sign "
            "signals with it; give watch.notify_secret_file a secret of its own")
    return secret


def parse_deadline(text: str, now: float) -> float:
    """Unix seconds from ISO 8601 with a zone, or from ``+90s``/``+30m``/``+2h``/``+1d``.

    Raises ValueError with a message fit for the user.
    """
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative:
        return now + float(relative[1]) * _UNIT_SECONDS[relative[2]]
    if value.lower() == "now":
        return now
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a deadline: give ISO 8601 with a zone (2026-11-24T12:00:00Z) "
            "or a time from now (+90s, +30m, +2h, +1d)") from None
    if when.tzinfo is None or when.utcoffset() is None:
        example = value if len(value) > 10 else f"{value}T00:00:00"  # a date alone
        raise ValueError(f"{text!r} has no time zone: add one, e.g. {example}Z for UTC or "
                         f"{example}+01:00")
    return when.timestamp()


def _field(data: Mapping[str, Any], name: str, default: str | None = None) -> str:
    """A string field; without ``default`` it is required."""
    value = data.get(name)
    if value is None:
        if default is None:
            raise SignalRefused("malformed", f"malformed signal: {name} is required")
        return default
    if not isinstance(value, str):
        raise SignalRefused("malformed", f"malformed signal: {name} must be a string")
    return value


def _deadline(value: Any, now: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SignalRefused("malformed", "malformed signal: deadline must be ISO 8601 with a "
                            "zone or Unix seconds")
    if isinstance(value, str):
        try:
            return parse_deadline(value, now)
        except ValueError as exc:
            raise SignalRefused("malformed", f"malformed signal: deadline: {exc}") from None
    if not math.isfinite(value) or value <= 0:
        raise SignalRefused("malformed", f"malformed signal: deadline {value!r} is not a time")
    return float(value)


def parse_signal(body: bytes, *, now: float, providers: Collection[str]) -> Notice:
    """The notice a verified request carries, or SignalRefused("malformed") naming the field."""
    if len(body) > MAX_BODY_BYTES:
        raise SignalRefused("malformed", f"malformed signal: body of {len(body)} bytes is more "
                            f"than {MAX_BODY_BYTES}")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignalRefused("malformed", f"malformed signal: body is not JSON ({exc})") \
            from None
    if not isinstance(data, dict):
        raise SignalRefused("malformed", "malformed signal: body must be a JSON object")
    kind = _field(data, "type")
    if kind not in SIGNAL_TYPES:
        raise SignalRefused("malformed", f"malformed signal: type {kind!r} is unknown; "
                            f"known: {', '.join(SIGNAL_TYPES)}")
    provider = _field(data, "provider")
    if provider not in providers:
        raise SignalRefused("malformed", f"malformed signal: provider {provider!r} runs none "
                            f"of our sites; providers: {', '.join(sorted(providers))}")
    if "deadline" not in data or data["deadline"] is None:
        raise SignalRefused("malformed", "malformed signal: deadline is required")
    deadline = _deadline(data["deadline"], now)
    named = _field(data, "source", "webhook")
    source = _SOURCES.get(named)
    if source is None:
        raise SignalRefused("malformed", f"malformed signal: source {named!r} is unknown; "
                            f"known: {', '.join(_SOURCES)}")
    notice = Notice(provider, deadline, source, text=_field(data, "text", ""), received=now,
                    reference=_field(data, "id", ""))
    problem = notice.deadline_problem(now)
    if problem is not None:
        raise SignalRefused(problem[0], f"refused signal: {problem[1]}")
    return notice


def signal_body(notice: Notice) -> bytes:
    """The JSON body that ``parse_signal`` reads back as ``notice`` (for the CLI and drills)."""
    data: dict[str, Any] = {"type": "termination", "provider": notice.provider,
                            "deadline": notice.deadline, "text": notice.text,
                            "source": notice.source}
    if notice.reference:
        data["id"] = notice.reference
    return json.dumps(data, sort_keys=True).encode()


def controller_url(listen: str) -> str:
    """The URL a client uses for a controller listening on ``host:port``."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):  # listening everywhere: ask on this machine
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def post_signal(url: str, secret: bytes, notice: Notice, timeout: float) -> httpx.Response:
    """POST ``notice``, signed, to the controller at ``url`` (the CLI's and the drill's way).

    Raises httpx.TransportError when nothing answers; the caller reads the status.
    """
    body = signal_body(notice)
    import httpx  # here: the agent imports this module and never posts a notice

    return httpx.post(f"{url}/v1/signals", content=body, timeout=timeout,
                      headers={"Content-Type": "application/json", **sign(secret, body)})
