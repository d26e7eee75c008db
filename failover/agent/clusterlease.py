"""The primary's lease, held in etcd by the primary's own agent: one cycle every TTL/3.

With ``cluster`` in its config, an agent takes the primary's lease from etcd
instead of from one controller's renewals (``failover.cluster.primarylease``
has the keys). Each cycle reads the decision (``primary``, written by the
leading controller): when it names this site, the agent renews its etcd
lease (or is granted a new one) and creates the hold (``primary-lease``)
bound to it, if absent. It holds the lease while the hold is bound to its
own lease, and is sure of it until ``ttl - MARGIN`` seconds after the
renewal was sent (etcd counts the TTL from when it received it, later).
That end goes to the agent's ``Lease``, whose watch fences the server when it
passes, exactly as when a controller's renewals stop.

- The decision names another site, or is withheld (a promote replaces this
  one): the lease ends at once, the server is fenced, and then the etcd
  lease is revoked so that the hold goes and the promote need not wait.
- The hold is another lease's (an old primary's, still running out): wait.
- etcd does not answer: while the lease still runs, the failsafe round
  (``failover.agent.failsafe``) may keep it sure for another TTL; otherwise
  it ends when it ends, and the server is fenced.
- The lease is regained (the decision still names this site): a fence the
  agent put up itself for want of the lease is lifted. A controller's
  renewal lifted it only when asked (the controller might not yet know of a
  promote); the decision in etcd is what every promote changes first, so
  while it names this site no other site has been promoted.

The etcd lease's id is kept in the journal: a restarted agent renews it and
finds the hold its own, instead of waiting a TTL for it to run out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from failover import logs
from failover.agent.failsafe import Round
from failover.agent.journal import AgentJournal
from failover.cluster.config import MARGIN
from failover.cluster.election import LeaderStore
from failover.cluster.etcd import Entry
from failover.cluster.exceptions import ClusterUnavailable, LeaseNotFound
from failover.cluster.primarylease import DECISION_KEY, HOLDER_KEY, WITHHELD
from failover.waiting import WaitTimeout, wait_for

log = logging.getLogger("failover.agent")
_LEASE_ID = "cluster.lease"  # the journal's note of our etcd lease (hex)
Failsafe = Callable[[dict[str, Any], float], Round]  # (the round's body, timeout)


# What the hold needs of etcd is what the leader key needs: get, create-if-absent, leases.
LeaseStore = LeaderStore


class Holding(Protocol):
    """What a cycle does to the agent's lease (``failover.agent.cluster`` over the Agent)."""

    def left(self) -> float | None:
        """Seconds the lease has left (negative: lapsed); None when off."""

    def hold(self, until: float, *, unfence: bool) -> bool:
        """Hold until ``until`` (the cycle's clock); True when a fence of its own was lifted."""

    def lapse(self) -> None:
        """End the lease now: the watch fences the server."""

    def settled(self) -> bool:
        """Whether a lapse has been acted on (fenced, or nothing to fence)."""


@dataclass(frozen=True)
class Said:
    """What one cycle did: a state a word long, and a sentence for the log."""

    state: str  # held, failsafe, lapsing, waiting, released, off, unreachable, error
    sentence: str


class ClusterLease:
    """One agent's hold on the primary's lease; ``run_cycle()`` every ``every`` seconds."""

    def __init__(self, store: LeaseStore, site: str, ttl: int, holding: Holding,
                 journal: AgentJournal, *, failsafe: Failsafe | None = None,
                 failsafe_timeout: float = 1.5, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.site = site
        self.ttl = ttl
        self.every = ttl / 3
        self.holding = holding
        self._journal = journal
        self._failsafe = failsafe
        self.failsafe_timeout = failsafe_timeout
        self._clock, self._sleep = clock, sleep
        noted = journal.setting(_LEASE_ID)
        self.lease: int | None = None if noted is None else int(noted, 16)
        self._revision: int | None = None  # the decision's mod_revision our hold is under
        self.said = Said("off", f"{site} has not looked at etcd yet")

    @property
    def failsafe_on(self) -> bool:
        """Whether a lease etcd cannot renew may be kept by the peers' vouches."""
        return self._failsafe is not None

    # -- one cycle ---------------------------------------------------------------

    def run_cycle(self) -> Said:
        """Look at the decision; hold, wait, let go or ask the peers; says what."""
        try:
            decision = self.store.get(DECISION_KEY)
        except ClusterUnavailable as exc:
            return self._unreachable(exc)
        if decision is None or decision.value != self.site:
            return self._not_ours(decision)
        self._revision = decision.mod_revision
        sent = self._clock()
        try:
            lease, ttl = self._renewed()
            entry = self.store.create(HOLDER_KEY, self.site, lease).entry
        except LeaseNotFound:  # it ended between its grant and the create: etcd is slow
            self._note(None)
            return Said("waiting", f"{self.site}'s etcd lease ended before it could take the "
                        "hold; it tries again")
        except ClusterUnavailable as exc:
            return self._unreachable(exc)
        if entry is None or entry.lease != lease:
            return self._held_by_another(entry)
        lifted = self.holding.hold(sent + ttl - MARGIN, unfence=True)
        if lifted:
            logs.log_event(log, "agent.unfence", site=self.site, why="lease regained in etcd")
        return Said("held", f"{self.site} holds the primary's lease (etcd lease {lease:x}, "
                    f"decision at revision {decision.mod_revision}), sure for "
                    f"{ttl - MARGIN:g}s" + ("; it lifted its own fence" if lifted else ""))

    def _renewed(self) -> tuple[int, int]:
        """Our etcd lease renewed, or a new one: (its id, its TTL)."""
        if self.lease is not None:
            try:
                ttl = self.store.refresh(self.lease)
            except LeaseNotFound:
                ttl = 0
            if ttl > 0:
                return self.lease, ttl
            self._note(None)
        lease = self.store.grant(self.ttl)
        self._note(lease)
        return lease, self.ttl

    def _held_by_another(self, entry: Entry | None) -> Said:
        """The decision names us but the hold is bound to another lease."""
        if self._left() > 0:  # ours ran out unseen (a freeze) and the hold went elsewhere
            self.holding.lapse()
        whose = "gone again" if entry is None else f"{entry.value}'s (etcd lease {entry.lease:x})"
        return Said("waiting", f"{self.site} is granted the primary's lease, but the hold is "
                    f"{whose} until that lease runs out")

    def _not_ours(self, decision: Entry | None) -> Said:
        """The decision names someone else, or no one: no lease; fenced if we held it."""
        who = ("no site" if decision is None else
               "no site: a promote is replacing one" if decision.value == WITHHELD else
               decision.value)
        if self._left() > 0:
            self.holding.lapse()
            logs.log_event(log, "agent.lease_lost", site=self.site, decision=who)
        if self.lease is None:
            return Said("off", f"{self.site} holds no lease: the decision names {who}")
        with contextlib.suppress(WaitTimeout):  # fenced first; the hold goes after
            wait_for(lambda: self.holding.settled() or None, timeout=self.every,
                     what="the lease's fence", retry_on=(), clock=self._clock,
                     sleep=self._sleep)
        if not self.holding.settled():
            return Said("released", f"{self.site} lost the lease (the decision names {who}); "
                        "its etcd lease runs out unrenewed while its server is being fenced")
        try:
            self.store.revoke(self.lease)
        except ClusterUnavailable as exc:
            return Said("released", f"{self.site} lost the lease (the decision names {who}); "
                        f"its etcd lease runs out unrenewed: {exc}")
        revoked = self.lease
        self._note(None)
        return Said("released", f"{self.site} lost the lease (the decision names {who}): "
                    f"fenced, and its etcd lease {revoked:x} revoked")

    def _unreachable(self, exc: ClusterUnavailable) -> Said:
        """etcd does not answer: the failsafe round, or the lease ends when it ends."""
        left = self._left()
        if left <= 0:
            return Said("unreachable", f"{self.site} holds no lease and cannot reach etcd: {exc}")
        if self._failsafe is None or self._revision is None:
            return Said("lapsing", f"{self.site} cannot renew its lease (failsafe off); its "
                        f"server is fenced in {left:.1f}s unless etcd answers: {exc}")
        sent = self._clock()
        round_ = self._failsafe({"primary": self.site, "revision": self._revision,
                                 "ttl": self.ttl}, self.failsafe_timeout)
        if round_.vouched:
            self.holding.hold(sent + self.ttl - MARGIN, unfence=False)
            return Said("failsafe", f"{self.site} cannot reach etcd; every peer vouched "
                        f"({round_.sentence()}): sure of its lease for {self.ttl - MARGIN:g}s")
        return Said("lapsing", f"{self.site} cannot reach etcd and the failsafe round failed "
                    f"({round_.sentence()}); its server is fenced in {left:.1f}s unless etcd "
                    "answers")

    def _left(self) -> float:
        left = self.holding.left()
        return -1.0 if left is None else left

    def _note(self, lease: int | None) -> None:
        self.lease = lease
        self._journal.set(_LEASE_ID, None if lease is None else f"{lease:x}")

    # -- running -----------------------------------------------------------------

    def step(self) -> Said:
        """One cycle, whatever happens in it; logged when its state changes."""
        try:
            said = self.run_cycle()
        except Exception as exc:  # a bug or a broken journal must not end the cycles
            said = Said("error", f"{self.site}: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}")
        if said.state != self.said.state:
            logs.log_event(log, "agent.cluster_lease", site=self.site, state=said.state,
                           said=said.sentence)
        self.said = said
        return said

    def loop(self, stopping: threading.Event) -> None:
        """Cycle every ``every`` seconds (start to start) until stopped; the first cycle is
        the caller's, before the server starts."""
        started = self._clock()
        while not stopping.wait(max(0.0, self.every - (self._clock() - started))):
            started = self._clock()
            self.step()

    def status(self) -> dict[str, Any]:
        """For the agent's status."""
        return {"state": self.said.state, "said": self.said.sentence,
                "etcd_lease": None if self.lease is None else f"{self.lease:x}"}
