"""What the controller must not forget across its own restart: notices, moves, decisions.

One SQLite file beside the run journal (``watch.sqlite``, 0600). Notices are
kept by their stable id, so the same notice heard twice (a letter and a
webhook, or a webhook retried) is one row. A move is the controller's
promise to act (scheduled, prepared, proposed, approved, started, done);
``failover approve`` writes its approval here, so it lands even while the
controller restarts. Decisions are appended for ``/v1/status`` and the drill.
The signatures of accepted webhook requests are kept while they are fresh, so
a captured request replayed after a restart is still refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from failover.engine.journal import Journal
from failover.exceptions import FailoverError
from failover.privatedb import private_db
from failover.watch.policy import ACTIVE, Decision, Move
from failover.watch.signals import DRILL_REFERENCE, Notice

STORE_FILE_NAME = "watch.sqlite"
SAME_DEADLINE = 0.001  # seconds: deadlines this close, for one provider, are one notice

SCHEMA = """
CREATE TABLE IF NOT EXISTS notices (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, deadline REAL NOT NULL, data TEXT NOT NULL,
    handled_by TEXT
);
CREATE TABLE IF NOT EXISTS moves (id TEXT PRIMARY KEY, state TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_signatures (signature TEXT PRIMARY KEY, stamp REAL NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, action TEXT NOT NULL,
    sentence TEXT NOT NULL, data TEXT NOT NULL
);
"""


class StoreError(FailoverError):
    """The store could not be read or written."""


class NotApprovable(FailoverError):
    """``failover approve`` named a move that is not waiting for approval."""


def store_path(journal: Path) -> Path:
    """Where the controller's store lives: beside the journal."""
    return journal.with_name(STORE_FILE_NAME)


def _move(data: str) -> Move:
    return Move(**json.loads(data))


class WatchStore:
    """The controller's memory; every method opens its own short connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with private_db(self.path, SCHEMA, "the controller's store") as conn:
                yield conn
        except sqlite3.Error as exc:  # e.g. locked for longer than the timeout
            raise StoreError(f"the controller's store {self.path}: {exc}") from exc

    # -- notices ----------------------------------------------------------------

    def add_notice(self, notice: Notice, *, reopen: bool = False) -> bool:
        """Keep a notice; False when it was already kept.

        It was kept already when a notice has its id (the sender's own reference)
        or its provider and exact deadline: a provider's webhook and the same
        notice sent by hand are one. With ``reopen``, a notice already answered
        by a finished move counts again: the primary has come back to the
        provider that is leaving.
        """
        if not notice.received:
            notice = replace(notice, received=time.time())
        data = json.dumps(notice.to_dict())
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # one writer decides "new" at a time
            try:
                known = db.execute(
                    "SELECT id, handled_by FROM notices WHERE id = ? OR (provider = ? AND "
                    "abs(deadline - ?) < ?) LIMIT 1",
                    (notice.id, notice.provider, notice.deadline, SAME_DEADLINE)).fetchone()
                if known is None:
                    db.execute("INSERT INTO notices (id, provider, deadline, data) "
                               "VALUES (?, ?, ?, ?)",
                               (notice.id, notice.provider, notice.deadline, data))
                    new = True
                elif reopen and known[1] is not None:
                    db.execute("UPDATE notices SET handled_by = NULL, deadline = ?, data = ? "
                               "WHERE id = ?", (notice.deadline, data, known[0]))
                    new = True
                else:
                    new = False
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return new

    def notices(self, *, pending: bool = True) -> list[Notice]:
        """The notices kept (only those no finished move has answered, by default)."""
        query = "SELECT data FROM notices" + (" WHERE handled_by IS NULL" if pending else "")
        with self._db() as db:
            rows = db.execute(query + " ORDER BY deadline").fetchall()
        return [Notice.from_dict(json.loads(r[0])) for r in rows]

    def withdraw_drill_notices(self, why: str) -> list[str]:
        """Withdraw the drills' notices that no move answered; their ids.

        A drill that ends (aborted, broken, its controller stopped) before the
        move its notice asked for must not leave the notice behind: the next
        controller to start would move the primary for a drill long over.
        """
        withdrawn = [n.id for n in self.notices() if n.reference.startswith(DRILL_REFERENCE)]
        with self._db() as db:
            for notice_id in withdrawn:
                db.execute("UPDATE notices SET handled_by = ? WHERE id = ? AND handled_by IS NULL",
                           (f"withdrawn: {why}", notice_id))
        return withdrawn

    # -- moves ------------------------------------------------------------------

    def save_move(self, move: Move) -> None:
        """Record a move, or its new state; a finished move answers its provider's notices."""
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO moves (id, state, data) VALUES (?, ?, ?)",
                       (move.id, move.state, json.dumps(asdict(move))))
            if move.state == "done":
                db.execute("UPDATE notices SET handled_by = ? WHERE provider = ? AND "
                           "handled_by IS NULL", (move.id, move.provider))

    def move(self, move_id: str) -> Move | None:
        """One move by id."""
        with self._db() as db:
            row = db.execute("SELECT data FROM moves WHERE id = ?", (move_id,)).fetchone()
        return None if row is None else _move(row[0])

    def moves(self, *, active: bool = True) -> list[Move]:
        """The moves still to happen or under way (or every move), oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT data, state FROM moves ORDER BY rowid").fetchall()
        return [_move(d) for d, state in rows if not active or state in ACTIVE]

    def recover_moves(self, journal: Journal) -> None:
        """After a restart: a move left started or preparing with no run to resume waits again."""
        for move in self.moves():
            if move.state not in ("started", "preparing"):
                continue
            run = None
            if move.run_id:
                try:
                    run = journal.run(move.run_id)
                except FailoverError:
                    run = None
            if run is not None and run.outcome == "ok":
                self.save_move(replace(
                    move, state="prepared" if run.plan.kind == "prepare" else "done"))
            elif run is None or run.settled or not run.changed_anything():
                self.save_move(replace(move, state="scheduled", run_id=None))
            # else: the journal holds it unfinished; the policy resumes it.

    def approve(self, move_id: str, by: str | None = None) -> Move:
        """Approve a proposed move (``failover approve``), naming who approved it."""
        move = self.move(move_id)
        if move is None:
            known = ", ".join(m.id for m in self.moves() if m.state == "proposed") or "none"
            raise NotApprovable(f"no move {move_id!r} is known to the controller; waiting for "
                                f"approval: {known}")
        approved = replace(move, state="approved", approved=time.time(), approved_by=by)
        with self._db() as db:  # only if it is still proposed: the controller may have moved on
            cursor = db.execute("UPDATE moves SET state = 'approved', data = ? WHERE id = ? AND "
                                "state = 'proposed'", (json.dumps(asdict(approved)), move_id))
        if cursor.rowcount != 1:
            now = self.move(move_id)
            raise NotApprovable(f"move {move_id} is {now.state if now else 'gone'}, not "
                                "waiting for approval")
        return approved

    # -- signatures ---------------------------------------------------------------

    def first_use(self, signature: str, timestamp: float, *, now: float,
                  max_age: float) -> bool:
        """Remember an accepted request's signature; False when it was used before.

        Kept until its timestamp is ``max_age`` old (its request is stale by then),
        in the file, so a replay is refused across the controller's restarts.
        """
        with self._db() as db:
            db.execute("DELETE FROM seen_signatures WHERE stamp < ?", (now - max_age,))
            cursor = db.execute("INSERT OR IGNORE INTO seen_signatures (signature, stamp) "
                                "VALUES (?, ?)", (signature, timestamp))
            return cursor.rowcount == 1

    # -- decisions --------------------------------------------------------------

    def add_decision(self, at: float, decision: Decision) -> None:
        """Append a decision (the controller keeps only changes, not every tick's)."""
        with self._db() as db:
            db.execute("INSERT INTO decisions (at, action, sentence, data) VALUES (?, ?, ?, ?)",
                       (at, decision.action, decision.sentence,
                        json.dumps(decision.to_dict(), default=str)))

    def decisions(self, limit: int = 20, since: float = 0.0) -> list[dict[str, Any]]:
        """The newest decisions, oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT at, action, sentence, data FROM decisions WHERE at >= ? "
                              "ORDER BY seq DESC LIMIT ?", (since, limit)).fetchall()
        return [{"at": at, "action": action, "sentence": sentence, **json.loads(data)}
                for at, action, sentence, data in reversed(rows)]
