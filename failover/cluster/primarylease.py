"""The primary's lease in etcd: the controllers' decision, the agent's hold, the engine's wait.

Two keys under the deployment's prefix:

- ``primary``: the decision, written by the leading controller (the engine's
  moves): the site that may hold the lease. No lease of its own: it outlives
  every process. ``""`` while a promote replaces the site it named (withheld).
- ``primary-lease``: the hold, the site's name bound to an etcd lease of its
  agent's (``failover.agent.clusterlease``), created only if absent, only by
  the agent of the site the decision names, and renewed by it every TTL/3.
  Its lease expires, or is revoked by its agent once it has fenced its
  server, and the key goes with it. Of two agents, only the one whose lease
  the key is bound to holds it: two can never both believe they do.

``EtcdLeases`` is the engine's side, the etcd-backed ``failover.lease.PrimaryLeases``.
A promote first withholds the decision from the old primary (it can no longer
take or renew the hold) and tells the other sites' agents to vouch for it no
more (its failsafe: ``failover.agent.failsafe``), then waits until its hold
is gone and the last vouch any agent gave it has run out; then the old
primary has fenced itself, whether it answers or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from failover.cluster.election import LEADER_KEY
from failover.cluster.etcd import Entry, Outcome
from failover.cluster.ops import Compare, Delete, Put, TxnResult
from failover.exceptions import FailoverError, StaleToken
from failover.leadertoken import TokenSource, no_token

DECISION_KEY = "primary"
HOLDER_KEY = "primary-lease"
WITHHELD = ""  # the decision while a promote replaces the site it named
CLOCK_MARGIN = 0.5  # seconds the engine's and a host's clocks may run apart
TTL_ROUNDING = 1.0  # etcd tells a lease's time to live in whole seconds, rounded down
WITHHOLD_KIND = "failsafe/withhold"  # the agents' operation (failover.agent.failsafe)
WITHHOLD_TRIES = 5  # conditional writes that found the decision changed under them


class DecisionStore(Protocol):
    """What the primary's lease needs of the cluster (``etcd.EtcdCluster`` has it)."""

    def get(self, key: str) -> Entry | None: ...
    def put(self, key: str, value: str, lease: int | None = None) -> int: ...
    def swap(self, key: str, value: str, mod_revision: int,
             lease: int | None = None) -> Outcome: ...
    def ttl(self, lease: int) -> int: ...
    def revision(self) -> int: ...
    def txn(self, compares: Sequence[Compare], success: Sequence[Put | Delete],
            failure: Sequence[Put | Delete] = ()) -> TxnResult: ...


class VouchingAgent(Protocol):
    """A site's agent as the engine reaches it (``AgentClient`` is one)."""

    def run(self, kind: str, body: dict[str, Any] | None = None, *,
            timeout: float = 60.0) -> dict[str, Any]: ...
    def status(self, timeout: float | None = None) -> dict[str, Any]: ...


def decided(store: DecisionStore) -> str | None:
    """The site the decision names (None: no decision, or withheld)."""
    entry = store.get(DECISION_KEY)
    return entry.value if entry is not None and entry.value != WITHHELD else None


def vouch_left(status: Mapping[str, Any], site: str) -> float | None:
    """Seconds a vouch an agent gave ``site`` may still keep it unfenced, from its status."""
    left = ((status.get("cluster") or {}).get("failsafe") or {}).get("vouched", {}).get(site)
    return float(left) if isinstance(left, int | float) else None


class EtcdLeases:
    """The primary's lease as moves see it when the agents hold it in etcd.

    ``agents`` gives every site's agent (the deployment's clients); each
    request to one is bounded by ``timeout`` seconds. ``clock`` is the wall
    clock (Unix seconds), what ``lapsed_by`` answers in. ``token`` is the
    leading controller's fencing token: with one, the decision is written only
    while the leader key is still that leader's (one transaction), so that a
    deposed leader thawed mid-move cannot withhold a later primary's lease.
    """

    ended_by_withhold = True  # the holder's agent renews it itself, until withheld

    def __init__(self, store: DecisionStore, agents: Callable[[], Mapping[str, VouchingAgent]],
                 *, timeout: float = 2.0, clock: Callable[[], float] = time.time,
                 token: TokenSource = no_token) -> None:
        self.store = store
        self._token = token
        self._agents = agents
        self.timeout = timeout
        self._clock = clock
        self._vouched: dict[str, float] = {}  # site: when its withheld vouches run out

    def withhold(self, site: str) -> None:
        """No more holds or vouches for ``site``: a promote replaces it.

        A round needs every peer of ``site`` (the agents list each other), so one
        peer that confirms ends its rounds. Raises FailoverError when none did
        and some agent did not answer: it might be a peer still vouching.
        """
        revision = self._withhold_decision(site)
        confirmed: list[str] = []
        problems: list[str] = []
        for name, agent in sorted(self._agents().items()):
            if name == site:
                continue
            try:
                said = agent.run(WITHHOLD_KIND, {"primary": site, "revision": revision},
                                 timeout=self.timeout)
            except FailoverError as exc:
                problems.append(f"{name}: {' '.join(str(exc).split())[:160]}")
                continue
            if said.get("peer") is True:
                confirmed.append(name)
            left = said.get("vouched")
            if isinstance(left, int | float):
                ends = self._clock() + float(left) + CLOCK_MARGIN
                self._vouched[site] = max(self._vouched.get(site, 0.0), ends)
        if not confirmed and problems:
            raise FailoverError(
                f"no peer of {site} confirmed it vouches no more for it ({'; '.join(problems)})"
                f": while etcd is out of its reach, {site} could stay unfenced by its failsafe; "
                f"bring an agent back, or fence {site}")

    def _withhold_decision(self, site: str) -> int:
        """Take the decision from ``site`` if it names it; the revision every grant to it
        so far is at or below."""
        for _ in range(WITHHOLD_TRIES):
            entry = self.store.get(DECISION_KEY)
            if entry is None:
                return self.store.revision()
            if entry.value != site:
                return entry.mod_revision
            if self._write(WITHHELD, Compare.unchanged(DECISION_KEY, entry.mod_revision)):
                return entry.mod_revision
        raise FailoverError(f"the primary's decision kept changing while {site} was withheld "
                            f"from it ({WITHHOLD_TRIES} tries): is another controller moving "
                            "the primary?")

    def lapsed_by(self, site: str) -> float | None:
        """When ``site`` has certainly fenced itself, as far as etcd and the agents tell now.

        Never None: without a hold in etcd the site has none (or no longer).
        While its hold is there the answer lies ahead; the caller asks again.
        """
        now = self._clock()
        ends = now
        holder = self.store.get(HOLDER_KEY)
        if holder is not None and holder.value == site:
            ttl = self.store.ttl(holder.lease) if holder.lease else 0
            ends = now + ttl + TTL_ROUNDING + CLOCK_MARGIN
        ends = max(ends, self._vouched.get(site, 0.0))
        for name, agent in self._agents().items():
            if name == site:
                continue
            try:
                left = vouch_left(agent.status(timeout=self.timeout), site)
            except FailoverError:
                continue  # withhold's answers cover an agent that no longer answers
            if left is not None:
                ends = max(ends, self._clock() + left + CLOCK_MARGIN)
        return ends

    def adopt(self, site: str) -> bool:
        """A new leader's first word: ``site``, the one primary it sees, holds the lease,
        unless some decision is there already (a withheld one included: a promote is under
        way). True when this call wrote it."""
        return self._write(site, Compare.absent(DECISION_KEY))

    def allow(self, site: str) -> None:
        """``site`` is being promoted: the decision names it, and its agent may hold the lease."""
        self._write(site)

    def _write(self, value: str, condition: Compare | None = None) -> bool:
        """Write the decision if ``condition`` holds and, with a token, while its leader
        leads; whether it was written. Raises StaleToken when another leads."""
        token = self._token()
        if token is None:
            if condition is None:
                self.store.put(DECISION_KEY, value)
                return True
            return self.store.swap(DECISION_KEY, value, int(condition.against)).succeeded
        compares = [Compare(LEADER_KEY, "CREATE", token)]
        if condition is not None:
            compares.append(condition)
        if self.store.txn(compares, [Put(DECISION_KEY, value)]).succeeded:
            return True
        leader = self.store.get(LEADER_KEY)
        if leader is None:
            raise StaleToken(token, token, "etcd", why=f"the leader key of token {token} is "
                             "gone: this controller no longer leads; the decision is unchanged")
        if leader.create_revision != token:
            raise StaleToken(token, leader.create_revision, "etcd's leader key")
        return False
