"""Every drill that ran, kept: what `failover drill history`, /metrics and the evidence read.

One SQLite file beside the run journal (``drills.sqlite``, 0600). A drill is
written twice: ``begin`` before its fault (scenario, sites, who runs it), so
that a drill cut short by a crash can still be failed back from what was
recorded; then ``add`` (with its report) or ``fail`` (no report: it broke)
once it has ended. ``entries`` lists the ended ones, oldest first; the ones
still under way are ``under_way``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from failover.drill.results import DrillReport
from failover.exceptions import FailoverError
from failover.privatedb import private_db
from failover.processes import runs, start_ticks

HISTORY_FILE_NAME = "drills.sqlite"
Trigger = Literal["cli", "schedule", "chaostoolkit"]
TRIGGERS: tuple[str, ...] = ("cli", "schedule", "chaostoolkit")

SCHEMA = """
CREATE TABLE IF NOT EXISTS drills (
    id TEXT PRIMARY KEY, scenario TEXT NOT NULL, trigger TEXT NOT NULL, started REAL NOT NULL,
    state TEXT NOT NULL, from_site TEXT, standby_site TEXT, to_site TEXT,
    owner_pid INTEGER, owner_ticks INTEGER, data TEXT
);
CREATE INDEX IF NOT EXISTS drills_started ON drills (started);
"""


class HistoryError(FailoverError):
    """The drill history could not be read or written."""


def history_path(journal: Path) -> Path:
    """Where the drill history lives: beside the journal."""
    return journal.with_name(HISTORY_FILE_NAME)


def _utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


@dataclass(frozen=True)
class HistoryEntry:
    """One drill that ended: its figures, its verdicts, whether the lab was put back."""

    id: str
    scenario: str
    started: datetime  # UTC
    trigger: str  # cli | schedule | chaostoolkit
    passed: bool  # every objective met, not aborted, not broken
    aborted: str | None  # why it was aborted (a guard rail's limit, the controller stopping)
    rto_seconds: float | None
    write_unavailable_seconds: float
    lost_writes: int
    acked_writes: int
    failed_back: bool
    report_dir: str | None
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    ended: datetime | None = None  # UTC
    error: str | None = None  # the drill broke before it could be measured (no figures)
    from_site: str | None = None
    to_site: str | None = None

    @property
    def outcome(self) -> str:
        """passed, failed (an objective missed), aborted, or error (no figures)."""
        if self.error is not None:
            return "error"
        if self.aborted is not None:
            return "aborted"
        return "passed" if self.passed else "failed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, times as ISO 8601 and the outcome spelled out."""
        out = asdict(self)
        out["started"] = self.started.isoformat()
        out["ended"] = None if self.ended is None else self.ended.isoformat()
        out["outcome"] = self.outcome
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        """An entry ``to_dict`` wrote."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["started"] = datetime.fromisoformat(data["started"])
        if data.get("ended"):
            known["ended"] = datetime.fromisoformat(data["ended"])
        return cls(**known)


@dataclass(frozen=True)
class UnderWay:
    """A drill begun and not ended: enough to fail it back after its runner died."""

    id: str
    scenario: str
    trigger: str
    started: datetime
    from_site: str
    standby_site: str
    to_site: str
    owner_pid: int
    owner_ticks: int | None

    @property
    def owner_alive(self) -> bool:
        """Whether the process that runs it still runs (same PID, same start time)."""
        return self.owner_ticks is not None and runs(self.owner_pid, self.owner_ticks)


class DrillHistory:
    """The drills of one deployment; every method opens its own short connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with private_db(self.path, SCHEMA, "the drill history") as conn:
                yield conn
        except sqlite3.Error as exc:
            raise HistoryError(f"the drill history {self.path}: {exc}") from exc

    def begin(self, scenario: str, *, trigger: str, from_site: str, standby_site: str,
              to_site: str, started: datetime | None = None) -> str:
        """Record a drill about to break something; its id, for ``add`` or ``fail``."""
        _check_trigger(trigger)
        drill_id = uuid.uuid4().hex[:12]
        at = (started or datetime.now(UTC)).timestamp()
        pid = os.getpid()
        with self._db() as db:
            db.execute("INSERT INTO drills (id, scenario, trigger, started, state, from_site, "
                       "standby_site, to_site, owner_pid, owner_ticks) "
                       "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                       (drill_id, scenario, trigger, at, from_site, standby_site, to_site,
                        pid, start_ticks(pid)))
        return drill_id

    def add(self, report: DrillReport, *, trigger: str, report_dir: Path | None = None,
            aborted: str | None = None, begun: str | None = None) -> HistoryEntry:
        """Record a drill that ended with a report (ending the row ``begun`` made, if any)."""
        _check_trigger(trigger)
        started = datetime.fromisoformat(report.started).astimezone(UTC)
        entry = HistoryEntry(
            id=begun or uuid.uuid4().hex[:12], scenario=report.scenario, started=started,
            trigger=trigger, passed=report.objectives_met and aborted is None,
            aborted=aborted, rto_seconds=report.rto_seconds,
            write_unavailable_seconds=report.write_unavailable_seconds,
            lost_writes=report.lost_writes, acked_writes=report.acked_writes,
            failed_back=report.failback is not None and report.failback.done,
            report_dir=None if report_dir is None else str(report_dir),
            verdicts=[asdict(v) for v in report.verdicts], ended=datetime.now(UTC),
            from_site=report.from_site, to_site=report.to_site)
        return self._end(entry, begun)

    def fail(self, begun: str, *, error: str | None = None, aborted: str | None = None,
             failed_back: bool) -> HistoryEntry:
        """End a drill that has no report: it broke (``error``), or was failed back after
        its runner died (``aborted``)."""
        under_way = next((d for d in self.under_way() if d.id == begun), None)
        if under_way is None:
            raise HistoryError(f"no drill {begun} is under way in {self.path}")
        entry = HistoryEntry(
            id=begun, scenario=under_way.scenario, started=under_way.started,
            trigger=under_way.trigger, passed=False, aborted=aborted, rto_seconds=None,
            write_unavailable_seconds=0.0, lost_writes=0, acked_writes=0,
            failed_back=failed_back, report_dir=None, ended=datetime.now(UTC),
            error=error, from_site=under_way.from_site, to_site=under_way.to_site)
        return self._end(entry, begun)

    def _end(self, entry: HistoryEntry, begun: str | None) -> HistoryEntry:
        data = json.dumps(entry.to_dict())
        with self._db() as db:
            if begun is None:
                db.execute("INSERT INTO drills (id, scenario, trigger, started, state, "
                           "from_site, to_site, data) VALUES (?, ?, ?, ?, 'ended', ?, ?, ?)",
                           (entry.id, entry.scenario, entry.trigger, entry.started.timestamp(),
                            entry.from_site, entry.to_site, data))
                return entry
            cursor = db.execute("UPDATE drills SET state = 'ended', data = ? WHERE id = ? "
                                "AND state = 'running'", (data, begun))
        if cursor.rowcount != 1:
            raise HistoryError(f"no drill {begun} is under way in {self.path}")
        return entry

    def claim(self, drill: UnderWay) -> bool:
        """Make this process the owner of a drill whose runner died, to fail it back; False
        when another process claimed it first."""
        pid = os.getpid()
        with self._db() as db:
            cursor = db.execute("UPDATE drills SET owner_pid = ?, owner_ticks = ? WHERE id = ? "
                                "AND state = 'running' AND owner_pid = ? AND owner_ticks IS ?",
                                (pid, start_ticks(pid), drill.id, drill.owner_pid,
                                 drill.owner_ticks))
        return cursor.rowcount == 1

    def entries(self, since: datetime | None = None) -> list[HistoryEntry]:
        """The drills that ended (begun at or after ``since``), oldest first."""
        after = float("-inf") if since is None else _aware(since).timestamp()
        with self._db() as db:
            rows = db.execute("SELECT data FROM drills WHERE state = 'ended' AND started >= ? "
                              "ORDER BY started, rowid", (after,)).fetchall()
        return [HistoryEntry.from_dict(json.loads(row[0])) for row in rows]

    def under_way(self) -> list[UnderWay]:
        """The drills begun and not ended, oldest first (their runner may have died)."""
        with self._db() as db:
            rows = db.execute("SELECT id, scenario, trigger, started, from_site, standby_site, "
                              "to_site, owner_pid, owner_ticks FROM drills WHERE state = "
                              "'running' ORDER BY started, rowid").fetchall()
        return [UnderWay(i, s, t, _utc(at), f, sb, to, pid, ticks)
                for i, s, t, at, f, sb, to, pid, ticks in rows]


def _check_trigger(trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise HistoryError(f"unknown drill trigger {trigger!r}; one of {', '.join(TRIGGERS)}")


def _aware(when: datetime) -> datetime:
    """A naive datetime is taken as UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
