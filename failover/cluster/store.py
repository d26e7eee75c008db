"""The controller's store in etcd: notices, moves and approvals every controller shares.

The same contract as the SQLite ``WatchStore`` (``failover.state.ControllerStore``),
kept where a new leader finds what the old one knew, and where ``failover
approve`` lands whichever site it is run at. Keys, under the deployment's
prefix (``/failover/<name>/``):

- ``notices/<id>``: ``{"notice": ..., "handled_by": <move id or why withdrawn>}``
- ``moves/<id>``: the move, as JSON
- ``signatures/<sha256 of it>``: a webhook request's signature, bound to a lease
  that ends when the request would be refused as stale anyway
- ``decisions/<at in µs>-<random>``: a decision; the newest ``KEEP_DECISIONS`` stay

What SQLite does in one locked transaction is here read, decide, then one
etcd transaction that holds only if what was read is unchanged (its
mod_revisions); when another writer came between, it reads again and
decides again, up to ``ATTEMPTS`` times. A write whose answer was lost and
that is retried finds its own value in place and counts as done.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from failover.cluster.etcd import Entry, EtcdCluster
from failover.cluster.exceptions import ClusterUnavailable
from failover.cluster.ops import ATTEMPTS, Compare, Delete, Put
from failover.watch.policy import ACTIVE, Decision, Move
from failover.watch.signals import DRILL_REFERENCE, Notice
from failover.watch.store import (
    SAME_DEADLINE,
    StoreError,
    approval,
    not_waiting,
    recover_moves,
    unknown_move,
)

if TYPE_CHECKING:  # failover.state opens this store: only its types are needed here
    from failover.state import RunJournal

NOTICES, MOVES, SIGNATURES, DECISIONS = "notices/", "moves/", "signatures/", "decisions/"
KEEP_DECISIONS = 500  # the newest decisions kept (/v1/status and drills read the last 50)
PRUNE_EVERY = 50  # decisions over KEEP_DECISIONS before the oldest are removed
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # an id that is safe as part of a key

P = ParamSpec("P")
R = TypeVar("R")


def _reaching(method: Callable[P, R]) -> Callable[P, R]:
    """The store's errors as the SQLite store's: etcd out of reach is a StoreError."""
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ClusterUnavailable as exc:
            raise StoreError(f"the controller's store in etcd: {exc}") from exc
    return call


def _notice(entry: Entry) -> tuple[Notice, str | None]:
    data = json.loads(entry.value)
    return Notice.from_dict(data["notice"]), data["handled_by"]


def _notice_value(notice: Notice, handled_by: str | None) -> str:
    # A random writer: a retried write knows its own value from another's of the same notice.
    return json.dumps({"notice": notice.to_dict(), "handled_by": handled_by,
                       "writer": uuid.uuid4().hex})


def same_notice(kept: Notice, notice: Notice) -> bool:
    """The store's rule for one notice heard twice: the same id, or the same provider and
    a deadline within SAME_DEADLINE."""
    return kept.id == notice.id or (kept.provider == notice.provider and
                                    abs(kept.deadline - notice.deadline) < SAME_DEADLINE)


def decision_key(at: float) -> str:
    """A decision's key: ordered by when it was made (µs), unique by a random tail."""
    return f"{DECISIONS}{max(0, round(at * 1_000_000)):017d}-{uuid.uuid4().hex[:6]}"


class EtcdStore:
    """The controller's memory in etcd, under the cluster's deployment prefix."""

    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster

    def _contended(self, what: str) -> StoreError:
        return StoreError(f"the controller's store in etcd: {what} changed under it "
                          f"{ATTEMPTS} times in a row; try again")

    def _newest(self, entries: list[Entry]) -> Compare:
        """The condition that none of ``entries`` (all the notices) changed, none was added."""
        return Compare.nothing_newer(NOTICES, max((e.mod_revision for e in entries), default=0))

    # -- notices ----------------------------------------------------------------

    @_reaching
    def add_notice(self, notice: Notice, *, reopen: bool = False) -> bool:
        """Keep a notice; False when it was already kept (see ``WatchStore.add_notice``)."""
        if not notice.received:
            notice = replace(notice, received=time.time())
        for _ in range(ATTEMPTS):
            kept = self.cluster.range(NOTICES)
            known = next((e for e in kept if same_notice(_notice(e)[0], notice)), None)
            if known is None:
                put = Put(f"{NOTICES}{notice.id}", _notice_value(notice, None))
            elif reopen and _notice(known)[1] is not None:
                put = Put(known.key, _notice_value(notice, None))
            else:
                return False
            if self.cluster.txn([self._newest(kept)], [put]).succeeded or \
                    self.cluster.holds([put]):
                return True
        raise self._contended("its notices")

    @_reaching
    def notices(self, *, pending: bool = True) -> list[Notice]:
        """The notices kept (only those no finished move has answered, by default)."""
        kept = [_notice(e) for e in self.cluster.range(NOTICES)]
        return sorted((n for n, handled in kept if not pending or handled is None),
                      key=lambda n: n.deadline)

    @_reaching
    def withdraw_drill_notices(self, why: str) -> list[str]:
        """Withdraw the drills' notices that no move answered; their ids."""
        for _ in range(ATTEMPTS):
            drills = [(e, n) for e in self.cluster.range(NOTICES)
                      for n, handled in [_notice(e)]
                      if handled is None and n.reference.startswith(DRILL_REFERENCE)]
            if not drills:
                return []
            compares = [Compare.unchanged(e.key, e.mod_revision) for e, _ in drills]
            puts = [Put(e.key, _notice_value(n, f"withdrawn: {why}")) for e, n in drills]
            if self.cluster.txn(compares, puts).succeeded or self.cluster.holds(puts):
                return [n.id for _, n in drills]
        raise self._contended("its notices")

    # -- moves ------------------------------------------------------------------

    @_reaching
    def save_move(self, move: Move) -> None:
        """Record a move, or its new state; a finished move answers its provider's notices."""
        put = Put(f"{MOVES}{move.id}", json.dumps(asdict(move)))
        if move.state != "done":
            self.cluster.put(put.key, put.value)
            return
        for _ in range(ATTEMPTS):  # with the notices it answers, all or none
            kept = self.cluster.range(NOTICES)
            answered = [Put(e.key, _notice_value(n, move.id)) for e in kept
                        for n, handled in [_notice(e)]
                        if n.provider == move.provider and handled is None]
            if self.cluster.txn([self._newest(kept)], [put, *answered]).succeeded:
                return
        raise self._contended("its notices")

    @_reaching
    def move(self, move_id: str) -> Move | None:
        """One move by id."""
        if not _ID.fullmatch(move_id):
            return None  # no id the controller makes: not a key to ask for
        entry = self.cluster.get(f"{MOVES}{move_id}")
        return None if entry is None else Move(**json.loads(entry.value))

    @_reaching
    def moves(self, *, active: bool = True) -> list[Move]:
        """The moves still to happen or under way (or every move), oldest first."""
        moves = [Move(**json.loads(e.value)) for e in self.cluster.range(MOVES, by="create")]
        return [m for m in moves if not active or m.state in ACTIVE]

    def recover_moves(self, journal: RunJournal) -> None:
        """After a restart: a move left started or preparing with no run to resume waits again."""
        recover_moves(self, journal)

    @_reaching
    def approve(self, move_id: str, by: str | None = None) -> Move:
        """Approve a proposed move, naming who approved it; of two approvers, one wins."""
        key = f"{MOVES}{move_id}"
        for _ in range(ATTEMPTS):
            entry = self.cluster.get(key) if _ID.fullmatch(move_id) else None
            if entry is None:
                raise unknown_move(move_id, self.moves())
            move = Move(**json.loads(entry.value))
            if move.state != "proposed":
                raise not_waiting(move_id, move)
            approved = approval(move, by)
            put = Put(key, json.dumps(asdict(approved)))
            # Only if no one wrote the move since: the controller may have moved on.
            if self.cluster.txn([Compare.unchanged(key, entry.mod_revision)], [put]).succeeded \
                    or self.cluster.holds([put]):
                return approved
        raise self._contended(f"move {move_id}")

    # -- signatures ---------------------------------------------------------------

    @_reaching
    def first_use(self, signature: str, timestamp: float, *, now: float,
                  max_age: float) -> bool:
        """Remember an accepted request's signature; False when it was used before.

        Kept, bound to a lease, until its timestamp is ``max_age`` old: etcd
        forgets it then by itself.
        """
        key = f"{SIGNATURES}{hashlib.sha256(signature.encode()).hexdigest()}"
        if self.cluster.get(key) is not None:
            return False
        lease = self.cluster.grant(max(1, math.ceil(timestamp + max_age - now)))
        outcome = self.cluster.create(key, json.dumps({"stamp": timestamp}), lease)
        # Ours also when a retried create saw its own first try's key (etcd.Outcome).
        if outcome.entry is not None and outcome.entry.lease == lease:
            return True
        with contextlib.suppress(ClusterUnavailable):  # unused: it expires by itself else
            self.cluster.revoke(lease)
        return False

    # -- decisions --------------------------------------------------------------

    @_reaching
    def add_decision(self, at: float, decision: Decision) -> None:
        """Append a decision; the oldest go once there are KEEP_DECISIONS newer."""
        self.cluster.put(decision_key(at), json.dumps(
            {"at": at, "action": decision.action, "sentence": decision.sentence,
             "data": decision.to_dict()}, default=str))
        if self.cluster.count(DECISIONS) > KEEP_DECISIONS + PRUNE_EVERY:
            kept = self.cluster.range(DECISIONS, newest_first=True, limit=KEEP_DECISIONS,
                                      keys_only=True)
            self.cluster.txn([], [Delete(DECISIONS, end=kept[-1].key)])

    @_reaching
    def decisions(self, limit: int = 20, since: float = 0.0) -> list[dict[str, Any]]:
        """The newest decisions, oldest first."""
        start = decision_key(since).rsplit("-", 1)[0] if since > 0 else None
        found = [json.loads(e.value) for e in self.cluster.range(
            DECISIONS, start=start, newest_first=True, limit=limit)]
        return [{"at": d["at"], "action": d["action"], "sentence": d["sentence"], **d["data"]}
                for d in reversed(found) if d["at"] >= since]
