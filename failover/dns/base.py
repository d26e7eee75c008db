"""The one base class of every DNS provider, and what ``verify`` reports.

Shaped like octoDNS: ``records`` and ``plan`` only read, ``apply`` changes
the world, ``verify`` asks the provider's authoritative servers (or its API
where those are out of reach) whether they now answer what we want.
Subclasses supply reading, applying and the list of servers to ask; the
checks that every provider must make (zone, types, provider name,
checksum) live here once.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from failover import logs
from failover.dns.records import Plan, Record, RecordKey, absolute_name, diff
from failover.exceptions import ConfigError, FailoverError, UnsafePlan

log = logging.getLogger("failover.dns")

Reader = Callable[[Sequence[RecordKey]], dict[RecordKey, Record]]


def log_event(event: str, **fields: object) -> None:
    """Log one structured line on the DNS plane's logger."""
    logs.log_event(log, event, **fields)


@dataclass(frozen=True)
class ServerCheck:
    """What one authoritative server (or the API) answered, and how it differs."""

    server: str
    answered: tuple[Record, ...] = ()
    problems: tuple[str, ...] = ()
    error: str | None = None

    @property
    def matches(self) -> bool:
        """True when the server answered, and answered exactly what is desired."""
        return self.error is None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready data."""
        return {
            "server": self.server, "matches": self.matches,
            "answered": [r.to_dict() for r in self.answered],
            "problems": list(self.problems), "error": self.error,
        }


@dataclass(frozen=True)
class VerifyResult:
    """Every server's answer for the desired records at one provider."""

    provider: str
    servers: tuple[ServerCheck, ...]

    @property
    def ok(self) -> bool:
        """True when at least one server was asked and every one matches."""
        return bool(self.servers) and all(s.matches for s in self.servers)

    def __str__(self) -> str:
        lines = [f"{self.provider}: {'verified' if self.ok else 'NOT verified'}"]
        for check in self.servers:
            if check.error is not None:
                lines.append(f"  {check.server}: error: {check.error}")
            elif check.problems:
                lines += [f"  {check.server}: {p}" for p in check.problems]
            else:
                lines.append(f"  {check.server}: matches")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "provider": self.provider, "ok": self.ok,
            "servers": [s.to_dict() for s in self.servers],
        }


def compare(
    wanted: Mapping[RecordKey, Record], absent: Iterable[RecordKey],
    answered: Mapping[RecordKey, Record],
) -> tuple[str, ...]:
    """Sentences naming every difference between what is wanted and what was answered."""
    problems = []
    for key, record in sorted(wanted.items()):
        got = answered.get(key)
        if got != record:
            found = got.describe() if got is not None else "nothing"
            problems.append(f"{key[0]} {key[1]}: expected {record.describe()}, got {found}")
    for key in sorted(absent):
        got = answered.get(key)
        if got is not None:
            problems.append(f"{key[0]} {key[1]}: expected nothing, got {got.describe()}")
    return tuple(problems)


class DnsProvider(ABC):
    """A place that holds the app's records; one subclass per kind of provider."""

    KIND: ClassVar[str]  # the ``kind`` in the config file
    SUPPORTS: ClassVar[frozenset[str]]  # record types this provider can manage

    def __init__(self, name: str, zone: str) -> None:
        self._name = name
        self._zone = absolute_name(zone)

    @property
    def name(self) -> str:
        """The provider's configured name, e.g. ``bind9``."""
        return self._name

    @property
    def zone(self) -> str:
        """The zone it holds, absolute and lowercase."""
        return self._zone

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, zone={self.zone!r})"

    # -- what subclasses supply -------------------------------------------------

    @abstractmethod
    def _read(self, keys: Sequence[RecordKey]) -> dict[RecordKey, Record]:
        """The RRsets the provider holds for ``keys`` (absent ones are left out)."""

    @abstractmethod
    def _apply(self, plan: Plan) -> None:
        """Make the plan's changes, each guarded by a prerequisite."""

    @abstractmethod
    def _verify_sources(self) -> Sequence[tuple[str, Reader]]:
        """The servers to ask in ``verify``: a label and a reader for each."""

    # -- the public surface -------------------------------------------------------

    def check(self, keys: Iterable[RecordKey]) -> tuple[RecordKey, ...]:
        """The keys, normalised; ConfigError for names outside the zone or unsupported types."""
        checked: list[RecordKey] = []
        problems: list[str] = []
        for name, rtype in keys:
            name, rtype = absolute_name(name), rtype.upper()
            if name != self.zone and not name.endswith("." + self.zone):
                problems.append(f"{name} is not in zone {self.zone}")
            elif rtype not in self.SUPPORTS:
                problems.append(
                    f"{name} {rtype}: {self.KIND} provider supports only "
                    f"{', '.join(sorted(self.SUPPORTS))}"
                )
            elif (name, rtype) not in checked:
                checked.append((name, rtype))
        if problems:
            raise ConfigError(f"DNS provider {self.name}: " + "; ".join(problems))
        return tuple(checked)

    def records(self, names: Iterable[RecordKey]) -> dict[RecordKey, Record]:
        """What the provider holds for these (name, type) pairs; reads only."""
        keys = self.check(names)
        return self._read(keys) if keys else {}

    def plan(self, desired: Iterable[Record], *, managed: Iterable[RecordKey] = ()) -> Plan:
        """The changes that would make the provider hold ``desired``; reads only.

        ``managed`` names further (name, type) pairs that we own: one the
        provider holds but ``desired`` lacks is planned for deletion.
        """
        desired = tuple(desired)
        keys = self.check([r.key for r in desired] + list(managed))
        started = time.monotonic()
        plan = Plan(self.name, diff(self.records(keys), desired), self.zone)
        log_event(
            "dns.plan", provider=self.name, zone=self.zone, changes=len(plan.changes),
            checksum=plan.checksum()[:12], ms=round((time.monotonic() - started) * 1000),
        )
        return plan

    def apply(self, plan: Plan, *, checksum: str | None = None) -> None:
        """Make the plan's changes at this provider.

        Refuses (UnsafePlan) a plan made for another provider or zone, and one
        whose checksum differs from ``checksum`` when that is given (what is
        applied must be what was reviewed). Safety policy (deletes, apex NS)
        is the caller's: ``plan.raise_if_unsafe()`` before this.
        """
        if plan.provider != self.name:
            raise UnsafePlan(
                f"plan was made for DNS provider {plan.provider!r}, not {self.name!r}; "
                "plan again for this provider"
            )
        if plan.zone is not None and plan.zone != self.zone:
            raise UnsafePlan(f"plan was made for zone {plan.zone}, {self.name} holds {self.zone}")
        if checksum is not None and checksum != plan.checksum():
            raise UnsafePlan(
                f"plan for {self.name} is not the one reviewed (checksum "
                f"{plan.checksum()[:12]}, reviewed {checksum[:12]}); plan and review again"
            )
        self.check(c.key for c in plan.changes)
        if plan.empty:
            log_event("dns.apply", provider=self.name, changes=0)
            return
        started = time.monotonic()
        try:
            self._apply(plan)
        except FailoverError as exc:
            log_event(
                "dns.apply", provider=self.name, changes=len(plan.changes), outcome="failed",
                error=type(exc).__name__, ms=round((time.monotonic() - started) * 1000),
            )
            raise
        log_event(
            "dns.apply", provider=self.name, changes=len(plan.changes), outcome="applied",
            checksum=plan.checksum()[:12], ms=round((time.monotonic() - started) * 1000),
        )

    def verify(
        self, desired: Iterable[Record], *, managed: Iterable[RecordKey] = ()
    ) -> VerifyResult:
        """Ask each authoritative server (or the API) whether it answers ``desired``.

        A pair in ``managed`` that ``desired`` lacks must be absent. A server
        that fails to answer is reported as such; it does not stop the others.
        """
        wanted = {r.key: r for r in desired}
        keys = self.check(list(wanted) + list(managed))
        absent = [k for k in keys if k not in wanted]
        checks: list[ServerCheck] = []
        try:
            sources = self._verify_sources()
        except FailoverError as exc:
            sources = ()
            checks.append(ServerCheck("nameservers", error=str(exc)))
        for label, read in sources:
            try:
                answered = read(keys)
            except FailoverError as exc:
                checks.append(ServerCheck(label, error=str(exc)))
                continue
            checks.append(ServerCheck(
                label, tuple(answered[k] for k in sorted(answered)),
                compare(wanted, absent, answered),
            ))
        result = VerifyResult(self.name, tuple(checks))
        log_event(
            "dns.verify", provider=self.name, ok=str(result.ok).lower(), servers=len(checks),
            mismatched=sum(not c.matches for c in checks),
        )
        return result
