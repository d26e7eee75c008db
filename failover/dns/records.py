"""Records, the changes between two sets of them, and the plan that carries those changes.

Everything here is plain data: no provider, no network. A ``Plan`` is what a
person reviews (``str``), what a journal stores (``to_dict``) and what
``apply`` checks against (``checksum``), so all three are derived from the
same canonical form.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from failover.exceptions import UnsafePlan

RTYPES = frozenset({"A", "AAAA", "CNAME", "TXT", "NS", "SOA"})
APEX_GUARDED = frozenset({"NS", "SOA"})  # changing these at the apex can take a zone offline
MAX_TTL = 2**31 - 1  # RFC 2181 section 8

RecordKey = tuple[str, str]  # (absolute lowercase name, rtype)


def absolute_name(name: str) -> str:
    """``name`` as an absolute, lowercase DNS name (adds the final dot)."""
    try:
        return dns.name.from_text(name.strip().lower(), origin=dns.name.root).to_text()
    except dns.exception.DNSException as exc:
        raise ValueError(f"{name!r} is not a valid DNS name: {exc}") from exc


def _canonical_value(rtype: str, value: str) -> str:
    # dnspython's presentation form, so that a value read from BIND, one read
    # from Route 53 and one written in a config file compare equal.
    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.from_text(rtype), value,
            origin=dns.name.root, relativize=False,
        )
    except dns.exception.DNSException as exc:
        raise ValueError(f"{value!r} is not a valid {rtype} value: {exc}") from exc
    text = rdata.to_text()
    return text.lower() if rtype in ("CNAME", "NS") else text  # names are case-blind


@dataclass(frozen=True)
class Record:
    """One RRset: every value of one type at one name, with its TTL.

    Construction normalises: the name becomes absolute and lowercase, the type
    uppercase, the values canonical and sorted. Invalid input raises ValueError.
    """

    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        rtype = self.rtype.upper()
        if rtype not in RTYPES:
            known = ", ".join(sorted(RTYPES))
            raise ValueError(f"record type {self.rtype!r} is not one of {known}")
        ttl_ok = isinstance(self.ttl, int) and not isinstance(self.ttl, bool)
        if not ttl_ok or not 0 <= self.ttl <= MAX_TTL:
            raise ValueError(f"TTL {self.ttl!r} of {self.name} {rtype} must be 0..{MAX_TTL}")
        if isinstance(self.values, str) or not self.values:
            raise ValueError(f"{self.name} {rtype} needs a non-empty tuple of values")
        values = tuple(sorted({_canonical_value(rtype, v) for v in self.values}))
        if rtype == "CNAME" and len(values) > 1:
            raise ValueError(f"{self.name} CNAME can have only one value, not {len(values)}")
        # frozen: normalisation has to go through object.__setattr__
        object.__setattr__(self, "name", absolute_name(self.name))
        object.__setattr__(self, "rtype", rtype)
        object.__setattr__(self, "values", values)

    @property
    def key(self) -> RecordKey:
        """(name, rtype): what identifies the RRset at a provider."""
        return (self.name, self.rtype)

    def describe(self) -> str:
        """The values and TTL, e.g. ``127.0.10.1 (ttl 5)``."""
        return f"{', '.join(self.values)} (ttl {self.ttl})"

    def __str__(self) -> str:
        return f"{self.name} {self.rtype}: {self.describe()}"

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {"name": self.name, "type": self.rtype, "ttl": self.ttl, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """The record saved by ``to_dict``."""
        return cls(data["name"], data["type"], data["ttl"], tuple(data["values"]))


@dataclass(frozen=True)
class Create:
    """Add an RRset that the provider does not have."""

    desired: Record

    @property
    def key(self) -> RecordKey:
        """The RRset this change touches."""
        return self.desired.key

    def __str__(self) -> str:
        return f"create {self.desired}"

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON-ready data."""
        return {"action": "create", "desired": self.desired.to_dict()}


@dataclass(frozen=True)
class Update:
    """Replace an RRset whose TTL or values differ from the desired ones."""

    existing: Record
    desired: Record

    def __post_init__(self) -> None:
        if self.existing.key != self.desired.key:
            raise ValueError(f"an update cannot turn {self.existing.key} into {self.desired.key}")

    @property
    def key(self) -> RecordKey:
        """The RRset this change touches."""
        return self.desired.key

    def __str__(self) -> str:
        return (
            f"update {self.desired.name} {self.desired.rtype}: "
            f"{self.existing.describe()} -> {self.desired.describe()}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON-ready data."""
        return {
            "action": "update",
            "existing": self.existing.to_dict(),
            "desired": self.desired.to_dict(),
        }


@dataclass(frozen=True)
class Delete:
    """Remove an RRset the provider has and the desired state does not."""

    existing: Record

    @property
    def key(self) -> RecordKey:
        """The RRset this change touches."""
        return self.existing.key

    def __str__(self) -> str:
        return f"delete {self.existing}"

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON-ready data."""
        return {"action": "delete", "existing": self.existing.to_dict()}


Change = Create | Update | Delete


def change_from_dict(data: Mapping[str, Any]) -> Change:
    """A change saved by its ``to_dict``."""
    action = data.get("action")
    if action == "create":
        return Create(Record.from_dict(data["desired"]))
    if action == "update":
        return Update(Record.from_dict(data["existing"]), Record.from_dict(data["desired"]))
    if action == "delete":
        return Delete(Record.from_dict(data["existing"]))
    raise ValueError(f"unknown change action {action!r}")


_ORDER = {Delete: 0, Update: 1, Create: 2}


def diff(existing: Mapping[RecordKey, Record], desired: Iterable[Record]) -> tuple[Change, ...]:
    """The changes that turn ``existing`` into ``desired``.

    ``existing`` is what the provider holds for the names being managed; an
    RRset in it that ``desired`` lacks is deleted. Deletes come first so that a
    name can change from A to CNAME (a CNAME may not sit beside other data).
    """
    wanted: dict[RecordKey, Record] = {}
    for record in desired:
        if record.key in wanted and wanted[record.key] != record:
            raise ValueError(f"{record.name} {record.rtype} is desired twice, differently")
        wanted[record.key] = record
    changes: list[Change] = []
    for key, record in wanted.items():
        current = existing.get(key)
        if current is None:
            changes.append(Create(record))
        elif current != record:
            changes.append(Update(current, record))
    changes += [Delete(record) for key, record in existing.items() if key not in wanted]
    return tuple(sorted(changes, key=lambda c: (_ORDER[type(c)], c.key)))


def _is_apex(name: str, zone: str | None) -> bool:
    # Without a zone we cannot tell the apex apart, so every name counts as one.
    return zone is None or name == zone


@dataclass(frozen=True)
class Plan:
    """The changes one provider needs, computed before anything is touched."""

    provider: str
    changes: tuple[Change, ...]
    zone: str | None = None

    @property
    def empty(self) -> bool:
        """True when the provider already holds the desired records."""
        return not self.changes

    def __str__(self) -> str:
        where = f"{self.provider} ({self.zone})" if self.zone else self.provider
        if self.empty:
            return f"{where}: no changes"
        count = len(self.changes)
        lines = [f"{where}: {count} change{'s' if count != 1 else ''}"]
        lines += [f"  {change}" for change in self.changes]
        return "\n".join(lines)

    def _canonical(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "zone": self.zone,
            "changes": [change.to_dict() for change in self.changes],
        }

    def checksum(self) -> str:
        """sha256 (hex) of the plan's canonical JSON: what was reviewed is what is applied."""
        canonical = json.dumps(self._canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data, with its checksum."""
        return {**self._canonical(), "checksum": self.checksum()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """A plan saved by ``to_dict``; refuses one whose checksum does not match."""
        plan = cls(
            data["provider"],
            tuple(change_from_dict(c) for c in data["changes"]),
            data.get("zone"),
        )
        expected = data.get("checksum")
        if expected is not None and expected != plan.checksum():
            raise UnsafePlan(
                f"plan for {plan.provider} was altered after it was made "
                f"(checksum {plan.checksum()[:12]}, recorded {str(expected)[:12]}); plan again"
            )
        return plan

    def raise_if_unsafe(self, *, allow_delete: bool = False) -> None:
        """Refuse (UnsafePlan) apex NS/SOA changes always, and deletions unless allowed."""
        problems: list[str] = []
        for change in self.changes:
            name, rtype = change.key
            if rtype in APEX_GUARDED and _is_apex(name, self.zone):
                problems.append(f"{change} touches the zone's {rtype} records")
            elif isinstance(change, Delete) and not allow_delete:
                problems.append(f"{change} (deleting needs allow_delete)")
        if problems:
            raise UnsafePlan(f"plan for {self.provider} refused: " + "; ".join(problems))
