"""Patroni's leader key: one controller leads, the others follow and take over when it goes dark.

Every controller, named by its site, runs an ``Election`` and calls
``run_cycle()`` once a loop (every ``loop_wait`` seconds); it has no thread of
its own. A follower looks at the leader key (``/failover/<name>/leader``) and,
when it is absent, creates it bound to a lease of ``ttl`` seconds (create only
if absent: of two that try, one wins). The leader renews its lease every cycle
and reads the key back. When it stops renewing (its site went dark, its
process froze), the lease expires, etcd deletes the key and a follower
creates it anew.

The leader counts itself the leader (``is_leader``) only while it is sure no
one else can hold the key: until ``ttl - loop_wait - MARGIN`` seconds after it
sent its last successful renewal (etcd counts the lease's ``ttl`` from the
moment it received that renewal, which is later). An action started inside
that window has a loop and the margin to finish before the key can pass on.
It steps down at once when the lease is gone or the key names someone else.
A leader that knows nothing new (etcd unreachable) is still sure until its
window closes, then steps down by the clock alone, without asking anyone.

``token`` is the fencing token of the current leadership: the leader key's
create_revision. A key is created at the cluster's next revision, and a new
leader's key can only be created after the old one's is gone, so every new
leader's token is higher than every earlier one's. Agents and the run journal
refuse a token older than the newest they have seen.

A controller that restarts finds its own name in the key under a lease it no
longer knows: it follows (as its former life's leadership) until that lease
expires, then competes like any other. Patroni would adopt the key; we do not,
so that two processes started with one name by mistake never both lead.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from failover import logs
from failover.cluster.config import MARGIN, timing_problems
from failover.cluster.etcd import Entry, Outcome
from failover.cluster.exceptions import ClusterUnavailable, LeaseNotFound

LEADER_KEY = "leader"
log = logging.getLogger("failover.cluster")


class LeaderStore(Protocol):
    """What an election needs of the cluster (``etcd.EtcdCluster`` has it)."""

    def get(self, key: str) -> Entry | None: ...
    def create(self, key: str, value: str, lease: int | None = None) -> Outcome: ...
    def grant(self, ttl: int) -> int: ...
    def refresh(self, lease: int) -> int: ...
    def revoke(self, lease: int) -> None: ...


@dataclass(frozen=True)
class Leader:
    """Who leads, and the fencing token of that leadership."""

    name: str
    token: int


@dataclass(frozen=True)
class _Hold:
    """One election's view, replaced whole so that readers in other threads see one moment."""

    lease: int | None = None  # the lease our key is bound to (or may be: a create in doubt)
    token: int | None = None  # our key's create_revision, once we know we hold it
    sure_until: float = float("-inf")  # the clock's time until which we surely hold it
    seen: Leader | None = None  # the leader as the last cycle that reached etcd saw it


class Election:
    """One controller's part in electing the leader; ``run_cycle()`` once a loop.

    ``retry_timeout`` is how long one call to the cluster may take (the
    cluster's own bound, ``EtcdCluster.from_config``); with ``ttl`` and
    ``loop_wait`` it must pass the rules of ``watch.cluster``, checked here too.
    """

    def __init__(
        self, cluster: LeaderStore, name: str, ttl: int, loop_wait: float,
        retry_timeout: float, *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problems = timing_problems(ttl, loop_wait, retry_timeout)
        if problems:
            raise ValueError("; ".join(problems))
        self.cluster = cluster
        self.name = name
        self.ttl = ttl
        self.loop_wait = loop_wait
        self.retry_timeout = retry_timeout
        self._clock = clock
        self._hold = _Hold()

    # -- what the controller asks ------------------------------------------------

    def _sure(self, hold: _Hold) -> bool:
        return hold.token is not None and self._clock() < hold.sure_until

    @property
    def is_leader(self) -> bool:
        """Whether this controller surely holds the leader key now (and for a loop more)."""
        return self._sure(self._hold)

    @property
    def token(self) -> int | None:
        """The fencing token of our leadership while we lead; None otherwise."""
        hold = self._hold
        return hold.token if self._sure(hold) else None

    def leader(self) -> Leader | None:
        """Who leads, as the last cycle that reached etcd saw it; None: no one, or unknown.

        A leader no longer sure of its key cannot say who leads: None.
        """
        hold = self._hold
        if hold.token is not None:
            return Leader(self.name, hold.token) if self._sure(hold) else None
        return hold.seen

    # -- one cycle ---------------------------------------------------------------

    def run_cycle(self) -> str:
        """Renew the key while leading, else look at it and take it when absent; says what."""
        if self._hold.lease is not None:
            return self._renew(self._hold.lease)
        return self._follow()

    def resign(self) -> str:
        """Give the key up now (revoke its lease), so that a follower need not wait for the TTL."""
        hold, self._hold = self._hold, _Hold(seen=None)
        if hold.lease is None:
            return f"{self.name} held no leader key"
        try:
            self.cluster.revoke(hold.lease)
        except ClusterUnavailable as exc:
            return f"{self.name} resigned; its key goes when its lease expires ({exc})"
        self._event("election.resigned", hold.token)
        return f"{self.name} resigned: the leader key is free"

    def _renew(self, lease: int) -> str:
        sent = self._clock()
        try:
            ttl = self.cluster.refresh(lease)
            entry = self.cluster.get(LEADER_KEY)  # also when deposed: then it says by whom
        except ClusterUnavailable as exc:
            return self._unsure(exc)
        if not ttl or entry is None or entry.lease != lease:
            return self._deposed(lease, ttl, entry)
        was_leader = self.is_leader
        token = entry.create_revision
        self._hold = _Hold(lease, token, sent + ttl - self.loop_wait - MARGIN,
                           Leader(self.name, token))
        if not was_leader:
            self._event("election.leading", token)
            return f"{self.name} leads (token {token}): its key is renewed"
        return f"{self.name} leads (token {token}), key renewed for {ttl}s"

    def _unsure(self, exc: ClusterUnavailable) -> str:
        """A renewal that reached no one: still the leader while sure, else stepped down."""
        hold = self._hold
        left = hold.sure_until - self._clock()
        if hold.token is not None and left > 0:
            return (f"{self.name} leads (token {hold.token}) but could not renew its key; "
                    f"sure of it for {left:.1f}s more: {exc}")
        return (f"{self.name} does not lead: it could not renew its key in time and keeps "
                f"trying: {exc}")

    def _deposed(self, lease: int, ttl: int, entry: Entry | None) -> str:
        """Our lease is gone or the key is another's: we are a follower from now on."""
        old = self._hold.token
        seen = Leader(entry.value, entry.create_revision) if entry is not None else None
        self._hold = _Hold(seen=seen)
        if ttl:  # our lease lives but holds no key: let it go
            self._revoke(lease)
        why = "its lease expired" if not ttl else (
            "the leader key is gone" if entry is None else
            f"the leader key is {entry.value}'s (token {entry.create_revision})")
        if old is None:  # a create whose outcome was in doubt did not make us the leader
            return f"{self.name} follows: it does not hold the leader key ({why})"
        self._event("election.deposed", old)
        return f"{self.name} no longer leads (token {old} is void): {why}"

    def _follow(self) -> str:
        try:
            entry = self.cluster.get(LEADER_KEY)
        except ClusterUnavailable as exc:
            self._hold = _Hold()
            return f"{self.name} follows; who leads is unknown: {exc}"
        if entry is None:
            return self._acquire()
        self._hold = _Hold(seen=Leader(entry.value, entry.create_revision))
        if entry.value == self.name:
            return (f"{self.name} follows: the leader key names it, under a lease of an earlier "
                    f"life of it (token {entry.create_revision}); it competes when that expires")
        return f"{self.name} follows {entry.value} (token {entry.create_revision})"

    def _acquire(self) -> str:
        """Create the leader key bound to a new lease, if no one else does first."""
        sent = self._clock()
        try:
            lease = self.cluster.grant(self.ttl)
        except ClusterUnavailable as exc:
            return f"{self.name} follows; the leader key is free but no lease was granted: {exc}"
        try:
            outcome = self.cluster.create(LEADER_KEY, self.name, lease)
        except LeaseNotFound:  # it expired before the create arrived: etcd is very slow
            return f"{self.name} follows; its new lease expired before it could take the key"
        except ClusterUnavailable as exc:
            # Perhaps applied: the next cycle's renewal finds out whether the key is ours.
            self._hold = _Hold(lease=lease)
            return f"{self.name} follows; whether it took the leader key is unknown: {exc}"
        entry = outcome.entry
        # Ours also when a retried create saw our own first try's key (see etcd.Outcome).
        if entry is not None and entry.lease == lease:
            leader = Leader(self.name, entry.create_revision)
            self._hold = _Hold(lease, entry.create_revision,
                               sent + self.ttl - self.loop_wait - MARGIN, leader)
            self._event("election.leading", entry.create_revision)
            return f"{self.name} took the leader key (token {entry.create_revision})"
        self._revoke(lease)
        if entry is None:  # gone again already (its lease was revoked): try next cycle
            self._hold = _Hold()
            return f"{self.name} follows; the leader key came and went"
        self._hold = _Hold(seen=Leader(entry.value, entry.create_revision))
        return f"{self.name} follows {entry.value}, which took the key first " \
               f"(token {entry.create_revision})"

    def _revoke(self, lease: int) -> None:
        """Revoke a lease we no longer need; one left behind expires by itself."""
        with contextlib.suppress(ClusterUnavailable):
            self.cluster.revoke(lease)

    def _event(self, event: str, token: int | None) -> None:
        logs.log_event(log, event, controller=self.name, token=token)
