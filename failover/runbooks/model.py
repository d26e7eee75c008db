"""What a runbook is made of: moves, their steps, and each step kind's words and commands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from failover.engine.plan import Step

if TYPE_CHECKING:
    from failover.runbooks.shell import Shell


@dataclass(frozen=True)
class Block:
    """A code block an operator runs as it stands (bash), with a sentence before it."""

    code: str
    note: str = ""


@dataclass(frozen=True)
class Check:
    """A command that shows whether a step did its work, and what it shows when it did."""

    command: str
    expect: str


@dataclass(frozen=True)
class MoveStep:
    """One step of a move and the tool's command that runs it."""

    step: Step
    command: str | None  # None: the tool has no step for it; by hand only
    number: int | None = None  # its place in the command's plan (1-based), if it has one


@dataclass(frozen=True)
class Move:
    """One kind of move, as a runbook tells it: when, the tool's commands, the steps."""

    name: str  # the file's stem, e.g. planned-switchover
    title: str
    from_site: str
    to_site: str
    when: str  # when to use this runbook
    commands: tuple[str, ...]  # the tool's commands for the whole move, in order
    steps: tuple[MoveStep, ...]
    notes: tuple[str, ...] = ()


Checks = Callable[["Shell", Step, Move], list[Check]]
Blocks = Callable[["Shell", Step, Move], list[Block]]


@dataclass(frozen=True)
class StepText:
    """The words and commands of one step kind.

    ``why`` and ``on_failure`` are templates: ``{name}`` takes a parameter of
    the step (``{site}``, ``{from}``) or one of ``names``' (``{normal_ttl}``).
    ``manual`` None means the step only looks: its checks are the manual step.
    ``recover`` is what to run when it fails (an undo, or another way).
    """

    why: str
    on_failure: str
    check: Checks
    manual: Blocks | None = None
    recover: Blocks | None = None


def names(shell: Shell, step: Step, move: Move) -> Mapping[str, Any]:
    """What a text's ``{name}`` fields may name: the step's parameters and the deployment's."""
    config = shell.config
    return {
        "from_site": move.from_site, "to_site": move.to_site,
        "normal_ttl": shell.deployment.normal_ttl, "low_ttl": config.dns.low_ttl,
        "lease_seconds": f"{config.watch.lease_seconds:g}", "zone": config.dns.zone,
        "timeout": f"{step.timeout:g}", **step.params,
    }
