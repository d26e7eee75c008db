"""What a drill sees of the controllers' cluster: who led when, and what the journal says.

With ``watch.cluster`` a controller runs at each site and one leads (the
leader key in etcd, ``failover.cluster.election``). A drill that takes a
site away must show that the lead passed on, when, and that the move ran
once: ``LeaderWatch`` reads the leader key a few times a second in a thread
of its own and keeps each change with its time (the key itself, not any one
controller's view of it), and ``ClusterFacts`` is the drill's notebook of
what it saw, which the objectives judge (``objectives.move_ran_once`` ...).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from failover.cluster.config import ClusterConfig
from failover.cluster.election import LEADER_KEY
from failover.cluster.etcd import EtcdCluster
from failover.cluster.exceptions import ClusterUnavailable
from failover.cluster.journal import NEWEST, TOKENS
from failover.engine.deployment import Deployment
from failover.engine.journal import RUN, RunRecord
from failover.state import cluster_client, open_store


@dataclass(frozen=True)
class Leadership:
    """Who held the leader key from ``at`` on (time.time()); site None: no one."""

    at: float
    site: str | None
    token: int | None

    def __str__(self) -> str:
        return "no one" if self.site is None else f"{self.site} (token {self.token})"


@dataclass(frozen=True)
class Deposed:
    """What a deposed leader, woken up, managed to change (all zero: nothing)."""

    events: int  # events written to the move's run after it woke
    runs: int  # runs begun after it woke
    primary_moved: bool  # the primary is no longer the one the move made
    refusal: str | None = None  # the line its log wrote when it was refused, if one was seen

    @property
    def writes(self) -> int:
        """Everything it changed, counted."""
        return self.events + self.runs + int(self.primary_moved)


@dataclass
class ClusterFacts:
    """The drill's notebook of the controllers' cluster; the objectives judge it."""

    ttl: float
    loop_wait: float
    changes: tuple[Leadership, ...] = ()  # every change of the leader key the drill saw
    fault_at: float = 0.0
    frozen_at: float | None = None  # when the leading controller was seen stopped (or frozen)
    runs: int = 0  # runs of any kind begun since the fault
    move_runs: int = 0  # runs of the move's kind begun since the fault
    starts: tuple[float, ...] = ()  # the move's run: when it began, then each resumption
    acting_decisions: int = 0  # decisions since the fault that asked for something
    deposed: Deposed | None = None
    # Each leader's token that wrote to the run journal since the fault, and when it first did.
    writers: tuple[tuple[int, float], ...] = ()
    lost_member: str | None = None  # the site whose etcd member the drill took away
    notes: list[str] = field(default_factory=list)

    def leader_at(self, at: float) -> Leadership | None:
        """The leadership as the drill last saw it at ``at`` (None: not yet looked)."""
        seen = [c for c in self.changes if c.at <= at]
        return seen[-1] if seen else None

    @property
    def before(self) -> Leadership | None:
        """Who led when the fault came."""
        return self.leader_at(self.fault_at)

    @property
    def after(self) -> Leadership | None:
        """Who led last."""
        return self.changes[-1] if self.changes else None

    def takeover(self) -> Leadership | None:
        """The first leader other than the one at the fault to take the key after it."""
        before = self.before
        return next((c for c in self.changes if c.at > self.fault_at and c.site is not None
                     and (before is None or c.token != before.token)), None)

    @property
    def resumes(self) -> int:
        """How many times the move's run was resumed."""
        return max(0, len(self.starts) - 1)

    def summary(self) -> list[str]:
        """The report's lines: who led before and after, when the lead passed, the run."""
        lines = [f"leader at the fault: {self.before or 'unknown'}; at the end: "
                 f"{self.after or 'unknown'}"]
        if (new := self.takeover()) is not None:
            since = f"{new.at - self.frozen_at:.1f}s after its leader was frozen" \
                if self.frozen_at is not None else f"+{new.at - self.fault_at:.1f}s"
            lines.append(f"{new} took the lead {since} (lease TTL {self.ttl:g}s)")
        if self.starts:
            lines.append(f"the move's run began once and was resumed {self.resumes} time(s)")
        kept = not [c for c in self.changes if c.at > self.fault_at]
        if kept and not self.runs and not self.acting_decisions:
            lines.append(f"nothing happened: {self.before} kept the lead, no decision to act, "
                         "no run")
        else:
            lines.append(f"{self.runs} run(s) began after the fault; "
                         f"{self.acting_decisions} decision(s) to act")
        return lines + self.notes


def run_starts(run: RunRecord) -> tuple[float, ...]:
    """When the run began, then each time it was resumed (its journal's run-start events)."""
    return tuple(e.at for e in run.events if e.step is None and e.action == RUN
                 and e.event == "start")


class LeaderWatch:
    """Reads the leader key every ``interval`` seconds in a thread; keeps each change."""

    def __init__(self, config: ClusterConfig, interval: float = 0.2) -> None:
        self.cluster = EtcdCluster.from_config(config)  # its own: the drill's is not shared
        self.interval = interval
        self.changes: list[Leadership] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def look(self) -> Leadership | None:
        """The leader key now, kept if it changed; None when etcd could not be read."""
        try:
            entry = self.cluster.get(LEADER_KEY)
        except ClusterUnavailable:
            return None
        now = Leadership(time.time(), entry.value if entry else None,
                         entry.create_revision if entry else None)
        last = self.changes[-1] if self.changes else None
        if last is None or (last.site, last.token) != (now.site, now.token):
            self.changes.append(now)
            return now
        return last

    def start(self) -> None:
        """Look now, then keep looking in a thread until ``stop``."""
        self.look()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="leader-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop looking (the changes stay)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.look()


def gather(facts: ClusterFacts, deployment: Deployment, changes: tuple[Leadership, ...],
           fault_at: float, run: RunRecord | None, acting: Collection[str]) -> ClusterFacts:
    """``facts`` completed from the leader watch, the shared journal and the shared store:
    the runs since the fault, the move's own begin and resumptions, the decisions to act."""
    facts.changes, facts.fault_at = changes, fault_at
    runs = [r for r in deployment.journal.runs(limit=20) if r.created >= fault_at]
    facts.runs = len(runs)
    if run is not None:
        run = deployment.journal.run(run.id)  # as it is now: a deposed leader may have woken
        facts.move_runs = sum(1 for r in runs if r.plan.kind == run.plan.kind)
        facts.starts = run_starts(run)
    decisions = open_store(deployment.config).decisions(limit=100, since=fault_at)
    facts.acting_decisions = sum(1 for d in decisions if d["action"] in acting)
    if (cluster := deployment.config.watch.cluster) is not None:
        facts.writers = journal_writers(cluster, fault_at)
    return facts


def journal_writers(config: ClusterConfig, since: float) -> tuple[tuple[int, float], ...]:
    """(token, first write) of each leader that first wrote to the journal at or after
    ``since``, oldest first: the journal keeps when each token first wrote (``tokens/``)."""
    entries = cluster_client(config).range(TOKENS, by="create", newest_first=True, limit=20)
    firsts = ((int(e.key.removeprefix(TOKENS)), float(json.loads(e.value)["at"]))
              for e in entries if e.key != NEWEST)
    return tuple(sorted(w for w in firsts if w[1] >= since))
