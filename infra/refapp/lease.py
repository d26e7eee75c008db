"""The site's lease, as its agent writes it, and the fence that refuses writes once it lapsed.

The agent on the host writes ``FAILOVER_LEASE_FILE`` (atomic rename) as
``{"state": "held", "monotonic_expires": <CLOCK_MONOTONIC seconds>}`` or
``{"state": "off"}``. The deadline is on the monotonic clock so that a host frozen
as a whole (SIGSTOP, a paused VM) sees the lease lapsed the instant it resumes: no
wall-clock step or NTP correction can extend it. No file, no variable or ``off``:
writes work as they always did. A file that cannot be read or understood counts as
lapsed: refusing writes is the safe side of doubt.

`LeaseGuard` checks the lease before a write request reaches its handler and again
just before the answer leaves: a request frozen in the middle must not be
acknowledged once the site may no longer be the primary.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import LeaseLapsed

logger = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What the file may say. "lapsed" is never written: it is what "held" becomes in time.
OFF, HELD, LAPSED = "off", "held", "lapsed"

# A version of the file: the agent replaces it by rename, so a new version is a new
# inode; mtime and size are what the brief asks for, the inode guards against two
# writes inside one coarse mtime tick.
_Version = tuple[int, int, int]
_UNREADABLE: _Version = (-1, -1, -1)  # the file is there but cannot even be stat'ed


@dataclass(frozen=True)
class LeaseView:
    """The lease as seen now: its state and, when writes are refused, why."""

    state: str  # off | held | lapsed
    reason: str | None = None

    @property
    def writable(self) -> bool:
        """Whether the lease lets this site take writes."""
        return self.reason is None


@dataclass(frozen=True)
class ParsedLease:
    """One version of the file, understood: ``expires`` is None when it says off."""

    expires: float | None
    problem: str | None = None  # why the file could not be understood


class LeaseFile:
    """Reads the agent's lease file, parsing it again only when it was replaced.

    Each look costs one ``os.stat``; ``check`` is safe from the event loop and from
    the thread pool at once (the cache is one attribute, swapped whole).
    """

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self._cached: tuple[_Version, ParsedLease] | None = None

    def check(self) -> LeaseView:
        """The lease now: off, held, or lapsed with the reason writes are refused."""
        parsed = self._read()
        if parsed is None or (parsed.expires is None and parsed.problem is None):
            return LeaseView(OFF)
        if parsed.problem is not None:
            return LeaseView(LAPSED, _refusal(f"this site's lease file {parsed.problem}, "
                                              "so the lease counts as lapsed"))
        assert parsed.expires is not None
        late = self.clock() - parsed.expires
        if late >= 0:
            return LeaseView(LAPSED, _refusal(f"this site's lease lapsed {late:.1f} s ago"))
        return LeaseView(HELD)

    def _read(self) -> ParsedLease | None:
        """This version of the file, or None when there is no lease file at all."""
        if self.path is None:
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._remember(_UNREADABLE, ParsedLease(None, f"cannot be read: {exc.strerror}"))
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._cached
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            with open(self.path, "rb") as file:
                stat = os.fstat(file.fileno())  # the version actually read
                version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                text = file.read()
        except FileNotFoundError:
            return None  # removed between the two looks: no lease file
        except OSError as exc:
            return self._remember(version, ParsedLease(None, f"cannot be read: {exc.strerror}"))
        return self._remember(version, parse_lease(text))

    def _remember(self, version: _Version, parsed: ParsedLease) -> ParsedLease:
        if parsed.problem is not None and self._cached != (version, parsed):
            # Once per version of the file (or per spell of not being able to stat it),
            # not once per request.
            logger.error("lease file %s %s: writes are refused until it is fixed",
                         self.path, parsed.problem)
        self._cached = (version, parsed)
        return parsed


def _refusal(what: str) -> str:
    """The sentence of a refused write, after what is wrong with the lease."""
    return f"{what}: it may no longer be the primary; writes are refused"


def parse_lease(text: bytes) -> ParsedLease:
    """Understand one version of the lease file; a problem means "treat as lapsed"."""
    try:
        data: Any = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return ParsedLease(None, "is not valid JSON")
    if not isinstance(data, dict):
        return ParsedLease(None, "is not a JSON object")
    state = data.get("state")
    if state == OFF:
        return ParsedLease(None)
    if state != HELD:
        return ParsedLease(None, f"has an unknown state {state!r} (expected 'held' or 'off')")
    expires = data.get("monotonic_expires")
    # bool is an int to Python; NaN would compare false forever and never lapse.
    if (isinstance(expires, bool) or not isinstance(expires, int | float)
            or not math.isfinite(expires)):
        return ParsedLease(None, f"has no finite number monotonic_expires: {expires!r}")
    return ParsedLease(float(expires))


class LeaseGuard:
    """ASGI middleware: a write is refused (503 ``fenced``) when the lease lapsed.

    Checked before the handler runs, and again once the handler's whole answer is
    ready and before any of it is sent: a write's answer is held back until then
    (write answers are small JSON bodies).
    """

    def __init__(self, app: ASGIApp, lease: LeaseFile, site: str) -> None:
        self.app = app
        self.lease = lease
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass reads through; refuse or hold back the answer of a write."""
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        if await self._refused(scope, receive, send, when="before"):
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                if await self._refused(scope, receive, send, when="after"):
                    return
                for each in held:
                    await send(each)

        await self.app(scope, receive, hold)

    async def _refused(self, scope: Scope, receive: Receive, send: Send, *, when: str) -> bool:
        """Answer 503 and return True when the lease lapsed."""
        view = self.lease.check()
        if view.writable:
            return False
        assert view.reason is not None
        error = LeaseLapsed(self.site, view.reason)
        logger.info("%s %s refused %s the handler: %s",
                    scope["method"], scope["path"], when, view.reason)
        await JSONResponse(error.body(), status_code=error.status_code,
                           headers=error.headers)(scope, receive, send)
        return True
