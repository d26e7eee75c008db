"""What the controller hears: probe observations and notices, as plain immutable data.

A probe (``failover.watch.probes``) turns one look at one target from one
vantage point into an ``Observation``. A notice (termination, suspension,
credentials refused) arrives by signed webhook, mailbox or the CLI and becomes
a ``Notice``. The policy (``failover.watch.policy``) decides over these and
nothing else, so it can be tested without a server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, get_args

from failover.exceptions import FailoverError

ProbeKind = Literal["http", "database", "dns", "api"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("http", "database", "dns", "api")
# up: healthy. down: no answer, a timeout, a 5xx, not ready. refused: the
# provider's API refused our credentials or said the account is blocked,
# which is not an outage but a termination signal.
Status = Literal["up", "down", "refused"]
NoticeSource = Literal["webhook", "mailbox", "cli", "api"]
# Sources whose reference is the notice's own id; the CLI's names who sent it,
# the API's which provider refused, so theirs say nothing about which notice.
REFERENCED_SOURCES: frozenset[str] = frozenset({"webhook", "mailbox"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# A deadline this far in the past is a typo or a replay, not an order: clock skew
# and delivery take seconds. Letters are the exception: mail arrives late and says
# what already happened ("has been suspended"), so a day is allowed for them, the
# same day ``letters`` allows for dates in a letter's text.
PAST_ALLOWANCE = 60.0
PAST_ALLOWANCE_BY_SOURCE: Mapping[str, float] = MappingProxyType({"mailbox": 86400.0})
# A deadline further ahead is refused too. Providers give days to months of notice;
# more than a year is a wrong year or milliseconds for seconds, and taking it would
# prepare a move now (lower TTLs, synchronous commits) and hold it for that long.
MAX_AHEAD = 366 * 86400.0
DeadlineProblem = Literal["past-deadline", "far-deadline"]
DEADLINE_PROBLEMS: frozenset[str] = frozenset(get_args(DeadlineProblem))


@dataclass(frozen=True)
class Observation:
    """One probe's look at one target from one vantage point."""

    kind: ProbeKind
    target: str  # a site's name; for DNS, the DNS provider's name
    vantage: str  # the vantage point the probe ran from
    at: float  # time.time() when the look began
    status: Status
    seconds: float  # how long the look took (latency, or the timeout spent)
    detail: str = ""  # why, in a few words: "HTTP 503", "timed out after 1.0s"
    # What the look found: role and lag_bytes (database), addresses (dns),
    # role (http readiness body), code (api).
    facts: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def ok(self) -> bool:
        """Whether the target answered as healthy."""
        return self.status == "up"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"kind": self.kind, "target": self.target, "vantage": self.vantage,
                "at": self.at, "status": self.status, "seconds": round(self.seconds, 4),
                "detail": self.detail, "facts": dict(self.facts)}


class NoticeRefused(FailoverError):
    """A notice that cannot be acted on (its deadline long past, or years ahead)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


DRILL_REFERENCE = "drill-"  # what a drill's notices' references start with


@dataclass(frozen=True)
class Notice:
    """A provider's word that it ends (or already ended) service for us.

    A drill's notice has a reference starting ``DRILL_REFERENCE``: once its drill
    ends, one no move answered is withdrawn (``WatchStore.withdraw_drill_notices``).
    """

    provider: str  # as in sites.*.provider: aws, hetzner
    deadline: float  # time.time() when service ends; the past means it has ended
    source: NoticeSource
    text: str = ""  # free text: the letter's subject, the sender's note
    received: float = 0.0  # time.time() when the controller heard it
    reference: str = ""  # the source's own id: a Message-ID, a webhook's id

    @property
    def id(self) -> str:
        """What makes two deliveries one notice.

        A webhook's or a letter's own id (the sender's reference, the
        Message-ID) names one notice whatever its deadline says; without one
        (the CLI, the API's refusals), the provider and the exact deadline do.
        Two notices for one provider in the same minute are two notices: the
        second may come after the first was answered and the primary moved back.
        """
        if self.reference and self.source in REFERENCED_SOURCES:
            key = f"{self.source}|{self.reference}"
        else:
            key = f"{self.provider}|{round(self.deadline * 1000)}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def deadline_problem(self, now: float) -> tuple[DeadlineProblem, str] | None:
        """Why this notice's deadline cannot be acted on at ``now``, or None when it can."""
        allowance = PAST_ALLOWANCE_BY_SOURCE.get(self.source, PAST_ALLOWANCE)
        when = _utc(self.deadline)
        if self.deadline < now - allowance:
            return ("past-deadline", f"deadline {when} is {_span(now - self.deadline)} in the "
                    f"past (more than the {_span(allowance)} allowed for clock skew and "
                    "delivery): a typo or a replay, not a notice; give the deadline the "
                    "provider gave")
        if self.deadline > now + MAX_AHEAD:
            return ("far-deadline", f"deadline {when} is more than a year ahead: check the "
                    "year (and seconds, not milliseconds); a move is prepared as soon as a "
                    "notice is taken, so send it again within a year of the deadline")
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"id": self.id, "provider": self.provider, "deadline": self.deadline,
                "source": self.source, "text": self.text, "received": self.received,
                "reference": self.reference}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notice:
        """The notice ``to_dict`` wrote."""
        return cls(str(data["provider"]), float(data["deadline"]), data["source"],
                   str(data.get("text", "")), float(data.get("received", 0.0)),
                   str(data.get("reference", "")))


def _utc(at: float) -> str:
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # beyond what a datetime holds
        return f"{at:g} (Unix seconds)"


def _span(seconds: float) -> str:
    """A duration as a person reads it: 61s, 5min, 3h, 2519 days."""
    for unit, size in ((" days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
