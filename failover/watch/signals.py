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
from types import MappingProxyType
from typing import Any, Literal

ProbeKind = Literal["http", "database", "dns", "api"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("http", "database", "dns", "api")
# up: healthy. down: no answer, a timeout, a 5xx, not ready. refused: the
# provider's API refused our credentials or said the account is blocked,
# which is not an outage but a termination signal.
Status = Literal["up", "down", "refused"]
NoticeSource = Literal["webhook", "mailbox", "cli", "api"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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


@dataclass(frozen=True)
class Notice:
    """A provider's word that it ends (or already ended) service for us."""

    provider: str  # as in sites.*.provider: aws, hetzner
    deadline: float  # time.time() when service ends; the past means it has ended
    source: NoticeSource
    text: str = ""  # free text: the letter's subject, the sender's note
    received: float = 0.0  # time.time() when the controller heard it
    reference: str = ""  # the source's own id: a Message-ID, a webhook's id

    @property
    def id(self) -> str:
        """Stable across deliveries: the same notice heard twice has one id.

        The deadline is taken to the minute, so a letter and a webhook about
        the same cut-off name the same notice even when their clocks differ by
        seconds; the source and reference are left out for the same reason.
        """
        minute = int(self.deadline // 60)
        return hashlib.sha256(f"{self.provider}|{minute}".encode()).hexdigest()[:16]

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
