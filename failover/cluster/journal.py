"""The run journal in etcd: every run and step, append-only, fenced, read by every controller.

The same contract as the SQLite ``Journal`` (``failover.state.RunJournal``),
kept where a new leader finds the run the old one left unfinished and resumes
it from its first step that did not end well. Keys, under the deployment's
prefix (``/failover/<name>/``):

- ``runs/<id>/meta``: the run's plan and when it began
- ``runs/<id>/events/<writer>``: one event (a run's or a step's start or end),
  named by a random id of its write; a run's events are read in the order
  etcd created them (create_revision), which is the order they happened
- ``started/<id>``: one per run; runs are listed newest first by this key's
  create_revision, the cluster's own order, not any site's clock
- ``tokens/newest``: the newest leader's fencing token a write carried, and
  ``tokens/<token>``: when that leader first wrote

Append-only: each of those rows is created only if absent (a condition on
its create_revision) and nothing here deletes one, so no event overwrites
another. Fencing: a write that carries a token reads ``tokens/newest`` and
refuses an older token (StaleToken); its transaction holds only while
``tokens/newest`` is unchanged since that read (its mod_revision), and raises
it when the token is newer. A deposed leader's late step result either sees
the newer token or finds the key changed, reads it again and is refused:
nothing of it lands. Two writers of one run at once (a leader's run, the
CLI's ``abandon``, or a deposed leader and the new one) never race for a key:
each event's is its own, so a deposed leader writing as fast as it can
cannot keep the new one's first write out. A write whose answer was lost,
retried, finds its own row and counts as done.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from failover.cluster.etcd import EtcdCluster
from failover.cluster.exceptions import Contended
from failover.cluster.ops import ATTEMPTS, Compare, Put
from failover.engine.journal import RUN, Event, Outcome, RunRecord, new_run_id
from failover.engine.plan import Plan
from failover.exceptions import ConfigError
from failover.leadertoken import TokenSource, no_token, refuse_older

RUNS, STARTED, TOKENS = "runs/", "started/", "tokens/"
NEWEST = f"{TOKENS}newest"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # new_run_id's, and safe in a key


def _meta_key(run_id: str) -> str:
    return f"{RUNS}{run_id}/meta"


def _events(run_id: str) -> str:
    return f"{RUNS}{run_id}/events/"


def _event(data: dict[str, Any]) -> Event:
    return Event(data["step"], data["action"], data["event"], data["outcome"], data["at"],
                 data["error"], data["result"])


class EtcdJournal:
    """The deployment's run journal in etcd.

    ``token`` is asked at each write: the writer's fencing token (None: a
    lone controller's, not checked). What it last read or wrote of
    ``tokens/newest`` it remembers, and counts on, so that a write is one
    request; the transaction's condition catches a newer token, and the
    write then reads afresh.
    """

    def __init__(self, cluster: EtcdCluster, token: TokenSource = no_token) -> None:
        self.cluster = cluster
        self._token = token
        self._newest: tuple[int | None, int] | None = None  # tokens/newest: value, mod_revision

    @property
    def where(self) -> str:
        """Where the journal is kept, for messages: the cluster and the keys' prefix."""
        return f"in etcd ({self.cluster.endpoints[0]}, ...) under {self.cluster.prefix}{RUNS}"

    def newest_token(self) -> int | None:
        """The newest leader's token a write carried (None: never one)."""
        entry = self.cluster.get(NEWEST)
        return None if entry is None else int(entry.value)

    # -- writing ----------------------------------------------------------------

    def _fence(self, token: int | None, fresh: bool) -> tuple[list[Compare], list[Put]]:
        """The conditions and writes that make a write carrying ``token`` fenced.

        Raises StaleToken when a newer token has written (as last read).
        """
        if token is None:
            return [], []
        if fresh or self._newest is None:
            entry = self.cluster.get(NEWEST)
            self._newest = (int(entry.value), entry.mod_revision) if entry else (None, 0)
        newest, revision = self._newest
        refuse_older(token, newest, f"the journal {self.where}")
        compares = [Compare.unchanged(NEWEST, revision)]
        if newest is not None and token <= newest:
            return compares, []
        return compares, [Put(NEWEST, str(token)),
                          Put(f"{TOKENS}{token:018d}", json.dumps({"at": time.time()}))]

    def _append(self, run_id: str, step: int | None, action: str, event: str,
                outcome: Outcome | None = None, error: str | None = None,
                result: dict[str, Any] | None = None, *, meta: str | None = None) -> None:
        """Write one event (with ``meta``: the run's first, and the run itself), fenced."""
        if not _RUN_ID.fullmatch(run_id):
            raise self._no_run(run_id)
        token = self._token()
        writer = uuid.uuid4().hex
        row = Put(f"{_events(run_id)}{writer}", json.dumps(
            {"step": step, "action": action, "event": event, "outcome": outcome,
             "at": time.time(), "error": error, "result": result}))
        meta_key = _meta_key(run_id)
        if meta is not None:  # a new run: its meta, its index entry and its first event
            rows = [Put(meta_key, meta), Put(f"{STARTED}{run_id}", run_id), row]
            conditions = [Compare.absent(meta_key), Compare.absent(row.key)]
        else:
            rows = [row]
            conditions = [Compare(meta_key, "CREATE", 0, "GREATER"), Compare.absent(row.key)]
        for attempt in range(ATTEMPTS):
            fences, raised = self._fence(token, fresh=attempt > 0)
            done = self.cluster.txn([*fences, *conditions], [*raised, *rows])
            if done.succeeded or self.cluster.holds(rows):
                if raised:  # our token is the newest now, at this revision (if we know it)
                    self._newest = (token, done.revision) if done.succeeded else None
                return
            if meta is None and self.cluster.get(meta_key) is None:
                raise self._no_run(run_id)
        raise Contended(f"the journal {self.where}: a newer token was written {ATTEMPTS} "
                        f"times in a row while run {run_id}'s event waited")

    def _no_run(self, run_id: str) -> ConfigError:
        return ConfigError(f"no run {run_id!r} in the journal {self.where}")

    def begin(self, plan: Plan) -> str:
        """Record a new run of ``plan``; returns its id."""
        run_id = new_run_id()
        meta = json.dumps({"kind": plan.kind, "from_site": plan.from_site,
                           "to_site": plan.to_site, "checksum": plan.checksum(),
                           "plan": plan.to_dict(), "created": time.time()})
        self._append(run_id, None, RUN, "start", meta=meta)
        return run_id

    def resumed(self, run_id: str) -> None:
        """Record that a run is being attempted again."""
        self._append(run_id, None, RUN, "start")

    def step_started(self, run_id: str, index: int, action: str) -> None:
        """Record the start of a step (before it touches anything)."""
        self._append(run_id, index, action, "start")

    def step_ended(
        self, run_id: str, index: int, action: str, outcome: Outcome, *,
        error: str | None = None, result: dict[str, Any] | None = None,
    ) -> None:
        """Record how a step ended and what it found or made."""
        self._append(run_id, index, action, "end", outcome, error, result)

    def ended(self, run_id: str, outcome: Outcome, error: str | None = None) -> None:
        """Record how the run ended."""
        self._append(run_id, None, RUN, "end", outcome, error)

    # -- reading ----------------------------------------------------------------

    def _record(self, run_id: str) -> RunRecord | None:
        """The run and its events, as of one revision (one range); None: no such run."""
        entries = self.cluster.range(f"{RUNS}{run_id}/", by="create")
        meta = next((e for e in entries if e.key == _meta_key(run_id)), None)
        if meta is None:
            return None
        data = json.loads(meta.value)
        events = tuple(_event(json.loads(e.value)) for e in entries
                       if e.key.startswith(_events(run_id)))
        return RunRecord(run_id, Plan.from_dict(data["plan"]), float(data["created"]), events)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first (in the order etcd created them)."""
        begun = self.cluster.range(STARTED, by="create", newest_first=True, limit=limit,
                                   keys_only=True)
        records = (self._record(e.key.removeprefix(STARTED)) for e in begun)
        return [r for r in records if r is not None]

    def run(self, run_id: str) -> RunRecord:
        """One run by its id."""
        record = self._record(run_id) if _RUN_ID.fullmatch(run_id) else None
        if record is None:
            raise self._no_run(run_id)
        return record

    def last(self) -> RunRecord | None:
        """The newest run, if any."""
        runs = self.runs(limit=1)
        return runs[0] if runs else None
