"""What the exit plan's evidence says, gathered from what the tool keeps.

Everything here reads; nothing is created or changed. The sites, their
providers and the objectives come from the configuration; the drills from
the drill history; the approvals from the controller's store; the runbooks'
checksums from the files in the runbooks directory. A file that does not
exist yet (no drill, no controller ever ran) is an empty record, not an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from failover.config import FailoverConfig
from failover.drill.history import DrillHistory, HistoryEntry, history_path
from failover.drill.scenarios import SCENARIOS
from failover.state import existing_store


@dataclass(frozen=True)
class SiteLine:
    """A site (or a spare a rebuild makes) and the provider it runs at."""

    name: str
    provider: str
    address: str
    app_url: str
    spare: bool


@dataclass(frozen=True)
class Coverage:
    """How one scenario was drilled in the period, and when it last was at all."""

    scenario: str
    summary: str
    drills: int
    passed: int
    last_drilled: datetime | None  # ever, not only in the period

    @property
    def gap(self) -> bool:
        """Not drilled in the period."""
        return self.drills == 0


@dataclass(frozen=True)
class RunbookSum:
    """A runbook file and its checksum: the version that was in force."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Approval:
    """A move the controller proposed in approve mode, and who let it go ahead."""

    move_id: str
    kind: str
    from_site: str
    to_site: str
    reason: str
    approved: datetime
    approved_by: str | None  # None: approved before the tool kept who did
    state: str


@dataclass(frozen=True)
class Evidence:
    """The exit plan's evidence for one period, ready to render."""

    generated: datetime
    since: datetime
    until: datetime
    deployment: str  # its configuration file
    sites: tuple[SiteLine, ...]
    dns_providers: tuple[tuple[str, str], ...]  # (name, kind)
    rto_seconds: float
    rpo_writes: int
    drills: tuple[HistoryEntry, ...]  # in the period, oldest first
    coverage: tuple[Coverage, ...]  # every scenario, in SCENARIOS' order
    runbooks_dir: Path
    runbooks: tuple[RunbookSum, ...]
    approvals: tuple[Approval, ...]

    @property
    def gaps(self) -> tuple[Coverage, ...]:
        """The scenarios not drilled in the period."""
        return tuple(c for c in self.coverage if c.gap)


def gather(config: FailoverConfig, source: str, *, since: datetime, runbooks_dir: Path,
           now: datetime | None = None) -> Evidence:
    """The evidence from ``since`` to now (both aware, UTC) for the deployment ``config``."""
    until = now or datetime.now(UTC)
    every = _drills(config.journal)
    drills = tuple(e for e in every if since <= e.started <= until)
    sites = [SiteLine(n, s.provider, str(s.address), s.app_url, False)
             for n, s in config.sites.items()]
    sites += [SiteLine(n, s.provider, str(s.address), s.app_url, True)
              for n, s in config.spares.items()]
    return Evidence(
        generated=until, since=since, until=until, deployment=source, sites=tuple(sites),
        dns_providers=tuple((n, p.kind) for n, p in config.dns_providers.items()),
        rto_seconds=config.objectives.rto_seconds, rpo_writes=config.objectives.rpo_writes,
        drills=drills, coverage=coverage(drills, every), runbooks_dir=runbooks_dir,
        runbooks=runbook_sums(runbooks_dir),
        approvals=approvals(config, since, until),
    )


def _drills(journal: Path) -> list[HistoryEntry]:
    """Every drill on record, oldest first; none when no drill has been recorded."""
    path = history_path(journal)
    return DrillHistory(path).entries() if path.exists() else []


def coverage(drills: tuple[HistoryEntry, ...], every: list[HistoryEntry]) -> tuple[Coverage, ...]:
    """For each scenario: its drills and passes in the period, and its last drill ever."""
    out = []
    for name, scenario in SCENARIOS.items():
        mine = [e for e in drills if e.scenario == name]
        ever = [e.started for e in every if e.scenario == name]
        out.append(Coverage(name, scenario.summary, len(mine), sum(e.passed for e in mine),
                            max(ever, default=None)))
    return tuple(out)


def runbook_sums(directory: Path) -> tuple[RunbookSum, ...]:
    """The SHA-256 of each Markdown file in ``directory`` (none if it does not exist)."""
    if not directory.is_dir():
        return ()
    sums = []
    for path in sorted(directory.glob("*.md")):
        data = path.read_bytes()
        sums.append(RunbookSum(path.name, hashlib.sha256(data).hexdigest(), len(data)))
    return tuple(sums)


def approvals(config: FailoverConfig, since: datetime, until: datetime) -> tuple[Approval, ...]:
    """The moves approved in the period (``failover approve``), oldest first."""
    store = existing_store(config)
    if store is None:  # no controller has run here: reading must not create its store
        return ()
    found = []
    for move in store.moves(active=False):
        if move.approved is None:
            continue
        approved = datetime.fromtimestamp(move.approved, UTC)
        if since <= approved <= until:
            found.append(Approval(move.id, move.kind, move.from_site, move.to_site, move.reason,
                                  approved, move.approved_by, move.state))
    return tuple(sorted(found, key=lambda a: a.approved))
