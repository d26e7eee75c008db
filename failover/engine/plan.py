"""Plans: ordered lists of idempotent steps, computed before anything is touched.

A plan is data: printable, serialisable and checksummed, so that what
``failover plan`` shows is exactly what ``failover switchover`` runs, and a
resumed run carries on with the plan it started with rather than one
recomputed from a half-moved world.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PlanKind = Literal["switchover", "promote", "rejoin", "prepare", "rebuild"]


@dataclass(frozen=True)
class Step:
    """One idempotent action with its parameters, time limit and retry rule."""

    action: str  # a name in failover.engine.steps.ACTIONS
    title: str  # one line for the person reading the plan
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 30.0
    retry: bool = False  # retried on transient errors only when repeating it is harmless
    changes: bool = True  # False for steps that only look

    def __post_init__(self) -> None:
        # 30 and 30.0 must give one checksum, before and after a trip through JSON.
        object.__setattr__(self, "timeout", float(self.timeout))

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON-ready data."""
        return {
            "action": self.action, "title": self.title, "params": dict(self.params),
            "timeout": self.timeout, "retry": self.retry, "changes": self.changes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        """A step saved by ``to_dict``."""
        return cls(
            data["action"], data["title"], dict(data["params"]), float(data["timeout"]),
            bool(data["retry"]), bool(data["changes"]),
        )


@dataclass(frozen=True)
class Plan:
    """What a run will do, in order, and what the planner had to warn about."""

    kind: PlanKind
    from_site: str
    to_site: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()  # e.g. that the old primary cannot be fenced

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data, checksum included."""
        return {**self._canonical(), "checksum": self.checksum()}

    def _canonical(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "from_site": self.from_site, "to_site": self.to_site,
            "steps": [s.to_dict() for s in self.steps], "notes": list(self.notes),
        }

    def checksum(self) -> str:
        """SHA-256 of the plan's canonical JSON: equal plans, equal checksums."""
        text = json.dumps(self._canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """A plan saved by ``to_dict``."""
        return cls(
            data["kind"], data["from_site"], data["to_site"],
            tuple(Step.from_dict(s) for s in data["steps"]), tuple(data.get("notes", ())),
        )

    def __str__(self) -> str:
        head = (
            f"plan: {self.kind} {self.from_site} -> {self.to_site} "
            f"({len(self.steps)} steps, checksum {self.checksum()[:12]})"
        )
        width = max((len(s.action) for s in self.steps), default=0)
        lines = [head]
        for i, step in enumerate(self.steps, 1):
            how = f"timeout {step.timeout:g}s" + (", retried" if step.retry else "")
            if not step.changes:
                how += ", read-only"
            lines.append(f"  {i:2d}. {step.action:<{width}}  {step.title}  [{how}]")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
