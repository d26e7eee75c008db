"""The agent's journal: its operations, its settings and the signatures it saw (SQLite, 0600).

An operation is recorded before it runs, under the id its sender chose, so
that the same id sent again returns the first answer and never runs twice,
and an agent that restarts finds what it was doing. Settings are what must
survive a restart: what should run (the database, the app), the lease, and
the newest leader's fencing token seen (``failover.agent.tokens``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

OpState = Literal["running", "ok", "failed"]
KEEP_OPERATIONS = 7 * 86400.0  # seconds a finished operation is kept (its id stays taken)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    op TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, state TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '', result TEXT, error TEXT,
    started REAL NOT NULL, finished REAL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_signatures (signature TEXT PRIMARY KEY, at REAL NOT NULL);
"""


@dataclass(frozen=True)
class Operation:
    """One operation as the journal holds it."""

    op: str
    kind: str
    params: dict[str, Any]
    state: OpState
    progress: str
    result: dict[str, Any] | None
    error: str | None
    started: float
    finished: float | None

    def to_dict(self) -> dict[str, Any]:
        """The operation as an answer's body."""
        return {"op": self.op, "kind": self.kind, "params": self.params, "state": self.state,
                "progress": self.progress, "result": self.result, "error": self.error,
                "started": self.started, "finished": self.finished}


class AgentJournal:
    """The agent's SQLite file; every call is one transaction, safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)  # made earlier with another mode: ours now
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- operations --------------------------------------------------------------

    def begin(self, op: str, kind: str, params: dict[str, Any]) -> tuple[Operation, bool]:
        """Record a new operation; returns it and True, or the earlier one by that id and False."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM operations WHERE op = ?", (op,)).fetchone()
            if row is not None:
                return _operation(row), False
            now = time.time()
            db.execute("INSERT INTO operations (op, kind, params, state, started) "
                       "VALUES (?, ?, ?, 'running', ?)", (op, kind, json.dumps(params), now))
            # Renewals come every second: an hour of them is plenty to answer a retry.
            db.execute("DELETE FROM operations WHERE finished < ? OR (kind LIKE 'lease%' "
                       "AND finished < ?)", (now - KEEP_OPERATIONS, now - 3600))
        return Operation(op, kind, params, "running", "", None, None, now, None), True

    def get(self, op: str) -> Operation | None:
        """One operation by its id."""
        with self._lock:
            row = self._db.execute("SELECT * FROM operations WHERE op = ?", (op,)).fetchone()
        return None if row is None else _operation(row)

    def running(self) -> list[Operation]:
        """Operations that were running (after a restart: interrupted), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM operations WHERE state = 'running' ORDER BY started").fetchall()
        return [_operation(r) for r in rows]

    def progress(self, op: str, text: str) -> None:
        """Note how far a running operation got."""
        with self._tx() as db:
            db.execute("UPDATE operations SET progress = ? WHERE op = ?", (text, op))

    def finish(self, op: str, result: dict[str, Any] | None, error: str | None) -> None:
        """Record an operation's end: its result, or the error that ended it."""
        with self._tx() as db:
            db.execute("UPDATE operations SET state = ?, result = ?, error = ?, finished = ? "
                       "WHERE op = ?", ("failed" if error else "ok",
                                        None if result is None else json.dumps(result),
                                        error, time.time(), op))

    # -- settings ------------------------------------------------------------------

    def setting(self, key: str, default: str | None = None) -> str | None:
        """A setting kept across restarts."""
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set(self, key: str, value: str | None) -> None:
        """Keep a setting (None removes it)."""
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def newest_token(self, offered: int | None = None) -> int | None:
        """The newest leader's token seen, ``offered`` counted: kept if it is newer.

        One transaction: two leaders' requests at once cannot both find
        themselves the newest.
        """
        with self._tx() as db:
            row = db.execute("SELECT value FROM settings WHERE key = 'token.newest'").fetchone()
            newest = None if row is None else int(row[0])
            if offered is not None and (newest is None or offered > newest):
                db.execute("INSERT INTO settings (key, value) VALUES ('token.newest', ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           (str(offered),))
                newest = offered
        return newest

    # -- signatures ----------------------------------------------------------------

    def first_use(self, signature: str, timestamp: float, *, now: float,
                  max_age: float) -> bool:
        """Remember a request's signature; False when it was seen already (a replay)."""
        with self._tx() as db:
            db.execute("DELETE FROM seen_signatures WHERE at < ?", (now - max_age - 60,))
            seen = db.execute("INSERT OR IGNORE INTO seen_signatures (signature, at) "
                              "VALUES (?, ?)", (signature, timestamp))
            return seen.rowcount == 1


def _operation(row: tuple[Any, ...]) -> Operation:
    op, kind, params, state, progress, result, error, started, finished = row
    return Operation(op, kind, json.loads(params), state, progress,
                     None if result is None else json.loads(result), error, started, finished)
