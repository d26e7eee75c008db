"""Publish the same records to every DNS provider, and say how each one fared.

DNS must not live only at the provider we fear, so a failover writes to all
of them. The providers are independent: each is planned, checked, applied
and verified in its own thread, and one that fails or hangs (within its own
timeouts) neither stops nor delays the others.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from failover.dns.base import DnsProvider, VerifyResult, log_event
from failover.dns.records import Plan, Record, RecordKey
from failover.exceptions import FailoverError

log = logging.getLogger("failover.dns")


@dataclass(frozen=True)
class ProviderOutcome:
    """What happened at one provider: its plan, whether it was applied, the check after."""

    provider: str
    plan: Plan | None = None
    applied: bool = False
    error: str | None = None
    verify: VerifyResult | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Planned without error and, unless a dry run, applied and verified."""
        if self.error is not None or self.plan is None:
            return False
        return self.dry_run or (self.verify is not None and self.verify.ok)

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.provider}: FAILED: {self.error}"
        lines = [str(self.plan)]
        if self.dry_run:
            lines.append("  (dry run: nothing applied)")
        elif self.verify is not None:
            lines.append(str(self.verify))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready data."""
        return {
            "provider": self.provider, "ok": self.ok, "applied": self.applied,
            "error": self.error, "plan": self.plan.to_dict() if self.plan else None,
            "verify": self.verify.to_dict() if self.verify else None,
        }


@dataclass(frozen=True)
class PublishResult:
    """Every provider's outcome, in the order the providers were given."""

    outcomes: tuple[ProviderOutcome, ...]
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True only when every provider succeeded."""
        return bool(self.outcomes) and all(o.ok for o in self.outcomes)

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the providers that did not succeed."""
        return tuple(o.provider for o in self.outcomes if not o.ok)

    def outcome(self, provider: str) -> ProviderOutcome:
        """The outcome at one provider, by its name."""
        for outcome in self.outcomes:
            if outcome.provider == provider:
                return outcome
        raise KeyError(provider)

    def __str__(self) -> str:
        return "\n".join(str(o) for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "ok": self.ok, "dry_run": self.dry_run, "failed": list(self.failed),
            "providers": [o.to_dict() for o in self.outcomes],
        }


def _publish_one(
    provider: DnsProvider, desired: Sequence[Record], managed: Sequence[RecordKey],
    dry_run: bool, allow_delete: bool,
) -> ProviderOutcome:
    plan: Plan | None = None
    applied = False
    try:
        plan = provider.plan(desired, managed=managed)
        plan.raise_if_unsafe(allow_delete=allow_delete)
        if dry_run:
            return ProviderOutcome(provider.name, plan, dry_run=True)
        provider.apply(plan, checksum=plan.checksum())
        applied = not plan.empty
        verify = provider.verify(desired, managed=managed)
        return ProviderOutcome(provider.name, plan, applied, verify=verify)
    except FailoverError as exc:
        message = str(exc)
    except Exception as exc:  # a bug in one provider must not cost us the others
        log.exception("unexpected error publishing to %s", provider.name)
        message = f"unexpected {type(exc).__name__}: {exc}"
    log_event("dns.publish.failed", provider=provider.name, applied=str(applied).lower(),
              error=message)
    return ProviderOutcome(provider.name, plan, applied, error=message, dry_run=dry_run)


def publish(
    providers: Iterable[DnsProvider], desired: Iterable[Record], *, dry_run: bool = False,
    managed: Iterable[RecordKey] = (), allow_delete: bool = False,
) -> PublishResult:
    """Plan, check, apply and verify ``desired`` at every provider, all at once.

    With ``dry_run`` only the plans are made. A provider that raises is
    reported in its outcome; the others carry on. ``managed`` and
    ``allow_delete`` are as in ``DnsProvider.plan`` and ``Plan.raise_if_unsafe``.
    """
    providers, desired, managed = tuple(providers), tuple(desired), tuple(managed)
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise ValueError(f"DNS provider names must be unique: {', '.join(names)}")
    if not providers:
        return PublishResult((), dry_run)
    with ThreadPoolExecutor(max_workers=len(providers), thread_name_prefix="dns-publish") as pool:
        futures = [
            pool.submit(_publish_one, p, desired, managed, dry_run, allow_delete)
            for p in providers
        ]
        result = PublishResult(tuple(f.result() for f in futures), dry_run)
    log_event(
        "dns.publish", providers=len(providers), ok=str(result.ok).lower(),
        failed=",".join(result.failed) or "-", dry_run=str(dry_run).lower(),
    )
    return result


def with_ttl(records: Iterable[Record], ttl: int) -> tuple[Record, ...]:
    """The same records with another TTL: lowered before a move, restored after."""
    return tuple(dataclasses.replace(record, ttl=ttl) for record in records)
