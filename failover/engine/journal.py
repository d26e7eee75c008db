"""The journal: an append-only SQLite record of every run and every step.

A run is resumed from it after a crash, ``failover status`` reports the last
one, and drills read step durations from it. Rows are only ever inserted
(triggers refuse UPDATE and DELETE), so the journal is also an audit trail:
what ran, when, and how it ended. SQLite's WAL mode with ``synchronous=FULL``
makes each row durable before the step it describes goes on.

A writer may carry its leader's fencing token (``failover.leadertoken``). The
journal keeps each newer token it sees (the ``tokens`` table, append-only as
well: it shows when each leader first wrote) and refuses a write whose token
is older than the newest, with StaleToken, in the transaction that would
have written it: nothing is written. A deposed leader's late step result
cannot then land after the new leader's. One floor for the whole journal,
not one per run: a leader leads the whole deployment, so once the new one
has written anything, the deposed one may neither end its run nor begin
another. A write without a token goes through as before (a lone controller).
A journal kept in etcd makes the same check in its transaction (compare the
newest token, then put it and the row).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from failover.engine.plan import Plan
from failover.exceptions import ConfigError
from failover.leadertoken import TokenSource, no_token, refuse_older
from failover.privatedb import private_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    from_site TEXT NOT NULL,
    to_site TEXT NOT NULL,
    checksum TEXT NOT NULL,
    plan TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER,              -- NULL for events of the run as a whole
    action TEXT NOT NULL,
    event TEXT NOT NULL,       -- start | end
    outcome TEXT,              -- ok | failed | abandoned (end events)
    at REAL NOT NULL,          -- seconds since the epoch
    error TEXT,
    result TEXT                -- JSON: what the step found or made
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
    token INTEGER NOT NULL,    -- a leader's fencing token, newer than any before it
    at REAL NOT NULL           -- when that leader first wrote
);
CREATE TRIGGER IF NOT EXISTS tokens_append_only_u BEFORE UPDATE ON tokens
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS tokens_append_only_d BEFORE DELETE ON tokens
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS runs_append_only_u BEFORE UPDATE ON runs
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS runs_append_only_d BEFORE DELETE ON runs
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""

Outcome = Literal["ok", "failed", "abandoned"]
# Results the journal keeps but reports never print: a pg_hba.conf may hold an
# LDAP bind password or a RADIUS secret.
UNSHOWN = frozenset({"original_hba"})
RUN = "run"  # the action name of run-level events


@dataclass(frozen=True)
class Event:
    """One row of the journal."""

    step: int | None
    action: str
    event: str
    outcome: str | None
    at: float
    error: str | None
    result: dict[str, Any] | None


@dataclass(frozen=True)
class StepRecord:
    """What the journal knows of one step of a run (its last attempt)."""

    index: int
    action: str
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None  # None: never started, or started and never ended
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0

    @property
    def seconds(self) -> float | None:
        """How long the last attempt took, if it ended."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON-ready data (file contents kept for a rejoin are left out)."""
        shown = {k: ("(kept in the journal)" if k in UNSHOWN else v)
                 for k, v in self.result.items()}
        return {
            "index": self.index, "action": self.action, "outcome": self.outcome,
            "started": self.started, "ended": self.ended, "seconds": self.seconds,
            "attempts": self.attempts, "error": self.error, "result": shown,
        }


@dataclass(frozen=True)
class RunRecord:
    """A run as the journal tells it: its plan and every event so far."""

    id: str
    plan: Plan
    created: float
    events: tuple[Event, ...]

    def _last_run_event(self) -> Event | None:
        return next((e for e in reversed(self.events) if e.step is None), None)

    @property
    def outcome(self) -> str:
        """ok, failed, or interrupted (its last attempt never ended: a crash or a kill)."""
        last = self._last_run_event()
        if last is None or last.event == "start":
            return "interrupted"
        return last.outcome or "failed"

    @property
    def finished(self) -> bool:
        """Whether the run ended well."""
        return self.outcome == "ok"

    @property
    def settled(self) -> bool:
        """Whether nothing is left to resume: it ended well or was abandoned."""
        return self.outcome in ("ok", "abandoned")

    @property
    def error(self) -> str | None:
        """The error the run ended with, if any."""
        last = self._last_run_event()
        return last.error if last is not None and last.event == "end" else None

    @property
    def ended(self) -> float | None:
        """When the run last ended (well or not)."""
        ends = [e.at for e in self.events if e.step is None and e.event == "end"]
        return ends[-1] if ends else None

    def steps(self) -> list[StepRecord]:
        """Every step of the plan with its last attempt's times and outcome."""
        records = {
            i: StepRecord(i, step.action) for i, step in enumerate(self.plan.steps)
        }
        for e in self.events:
            if e.step is None or e.step not in records:
                continue
            old = records[e.step]
            if e.event == "start":
                records[e.step] = StepRecord(
                    e.step, e.action, started=e.at, attempts=old.attempts + 1,
                )
            else:
                records[e.step] = StepRecord(
                    e.step, e.action, old.started, e.at, e.outcome, e.error, e.result or {},
                    old.attempts,
                )
        return [records[i] for i in sorted(records)]

    def warnings(self) -> list[str]:
        """What the steps that ended well warned about (e.g. a DNS provider that failed)."""
        return [w for s in self.steps() if s.outcome == "ok" for w in s.result.get("warnings", [])]

    def done(self) -> set[int]:
        """The indexes of the steps that ended well."""
        return {s.index for s in self.steps() if s.outcome == "ok"}

    def changed_anything(self) -> bool:
        """Whether any step that changes something was started."""
        return any(
            s.attempts and self.plan.steps[s.index].changes for s in self.steps()
        )

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-ready data (what ``status`` and drills report)."""
        return {
            "id": self.id, "kind": self.plan.kind, "from_site": self.plan.from_site,
            "to_site": self.plan.to_site, "checksum": self.plan.checksum(),
            "outcome": self.outcome, "error": self.error,
            "started": self.created, "ended": self.ended, "warnings": self.warnings(),
            "steps": [s.to_dict() for s in self.steps()],
        }


def new_run_id() -> str:
    """A new run's id: when it began, and six random hex digits (``20260101-120000-3f2a1b``)."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


class Journal:
    """One journal file; every method opens its own short connection.

    ``token`` is asked at each write: the writer's fencing token (None: a lone
    controller's, not checked).
    """

    def __init__(self, path: Path, token: TokenSource = no_token) -> None:
        self.path = path
        self._token = token

    @property
    def where(self) -> str:
        """Where the journal is kept, for messages: its file."""
        return str(self.path)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # FULL: a step the journal says ended must have ended, even after a power cut.
        with private_db(self.path, SCHEMA, "the journal", synchronous="FULL") as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, refused whole (StaleToken) when the writer's token is stale."""
        token = self._token()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # the token's check and the write, with no one between
            try:
                if token is not None:
                    newest = db.execute("SELECT MAX(token) FROM tokens").fetchone()[0]
                    refuse_older(token, newest, f"the journal {self.path}")
                    if newest is None or token > newest:
                        db.execute("INSERT INTO tokens VALUES (?, ?)", (token, time.time()))
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def newest_token(self) -> int | None:
        """The newest leader's token a write carried (None: never one)."""
        if not self.path.exists():
            return None
        with self._db() as db:
            newest = db.execute("SELECT MAX(token) FROM tokens").fetchone()[0]
        return None if newest is None else int(newest)

    def begin(self, plan: Plan) -> str:
        """Record a new run of ``plan``; returns its id."""
        run_id = new_run_id()
        with self._writing() as db:
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, plan.kind, plan.from_site, plan.to_site, plan.checksum(),
                 json.dumps(plan.to_dict()), time.time()),
            )
            self._insert(db, run_id, None, RUN, "start")
        return run_id

    def _event(
        self, run_id: str, step: int | None, action: str, event: str,
        outcome: Outcome | None = None, error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        with self._writing() as db:
            self._insert(db, run_id, step, action, event, outcome, error, result)

    @staticmethod
    def _insert(
        db: sqlite3.Connection, run_id: str, step: int | None, action: str, event: str,
        outcome: Outcome | None = None, error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO events (run_id, step, action, event, outcome, at, error, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, step, action, event, outcome, time.time(), error,
             json.dumps(result) if result is not None else None),
        )

    def resumed(self, run_id: str) -> None:
        """Record that a run is being attempted again."""
        self._event(run_id, None, RUN, "start")

    def step_started(self, run_id: str, index: int, action: str) -> None:
        """Record the start of a step (before it touches anything)."""
        self._event(run_id, index, action, "start")

    def step_ended(
        self, run_id: str, index: int, action: str, outcome: Outcome, *,
        error: str | None = None, result: dict[str, Any] | None = None,
    ) -> None:
        """Record how a step ended and what it found or made."""
        self._event(run_id, index, action, "end", outcome, error, result)

    def ended(self, run_id: str, outcome: Outcome, error: str | None = None) -> None:
        """Record how the run ended."""
        self._event(run_id, None, RUN, "end", outcome, error)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first."""
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(
                "SELECT id, plan, created FROM runs ORDER BY created DESC, rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [self._record(db, *row) for row in rows]

    def run(self, run_id: str) -> RunRecord:
        """One run by its id."""
        with self._db() as db:
            row = db.execute(
                "SELECT id, plan, created FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise ConfigError(f"no run {run_id!r} in the journal {self.path}")
            return self._record(db, *row)

    def last(self) -> RunRecord | None:
        """The newest run, if any."""
        runs = self.runs(limit=1)
        return runs[0] if runs else None

    @staticmethod
    def _record(db: sqlite3.Connection, run_id: str, plan: str, created: float) -> RunRecord:
        events = tuple(
            Event(step, action, event, outcome, at, error, json.loads(result) if result else None)
            for step, action, event, outcome, at, error, result in db.execute(
                "SELECT step, action, event, outcome, at, error, result FROM events "
                "WHERE run_id = ? ORDER BY seq", (run_id,),
            )
        )
        return RunRecord(run_id, Plan.from_dict(json.loads(plan)), created, events)
