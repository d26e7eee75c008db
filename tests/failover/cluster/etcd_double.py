"""A double of our etcd wrapper, in memory, for unit tests of the election's decisions.

It is not etcd: it keeps keys, revisions and leases as etcd does (a key is
created at the next revision; a lease's keys go when it expires or is
revoked; expiry is counted on the test's clock), so that a test can play
several controllers against one cluster and move time by hand. Each
controller reaches it through a ``Link`` that the test can cut, as a
partition would. The real wrapper is tested against real etcd members in
test_etcd_in_lab.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from failover.cluster.etcd import Entry, Outcome
from failover.cluster.exceptions import ClusterUnavailable, LeaseNotFound


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time on."""
        self.now += seconds


@dataclass
class _Lease:
    ttl: int
    expires_at: float


@dataclass
class EtcdDouble:
    """One etcd cluster's keys and leases, in memory, on ``clock``."""

    clock: Clock
    revision: int = 1
    keys: dict[str, Entry] = field(default_factory=dict)
    leases: dict[int, _Lease] = field(default_factory=dict)
    next_lease: int = 0x1000

    def expire(self) -> None:
        """Drop the leases whose time is up, and their keys."""
        for lease in [i for i, one in self.leases.items() if one.expires_at <= self.clock()]:
            self.drop_lease(lease)

    def drop_lease(self, lease: int) -> None:
        """End a lease: every key bound to it goes, each at a new revision."""
        self.leases.pop(lease, None)
        for key in [k for k, e in self.keys.items() if e.lease == lease]:
            self.revision += 1
            del self.keys[key]

    def link(self) -> Link:
        """A controller's way to the cluster."""
        return Link(self)


class Link:
    """One controller's connection to the double (``LeaderStore``); ``cut`` makes it fail."""

    def __init__(self, etcd: EtcdDouble) -> None:
        self.etcd = etcd
        self.cut = False
        self.apply_then_fail = False  # the next create is applied, its answer lost

    def _reach(self, what: str) -> EtcdDouble:
        if self.cut:
            raise ClusterUnavailable(f"etcd did not answer {what}: tried the double (cut off)")
        self.etcd.expire()
        return self.etcd

    def get(self, key: str) -> Entry | None:
        """The key, or None."""
        return self._reach(f"get {key}").keys.get(key)

    def create(self, key: str, value: str, lease: int | None = None) -> Outcome:
        """Write the key only if it is absent."""
        etcd = self._reach(f"create {key}")
        if key in etcd.keys:
            return Outcome(False, etcd.keys[key])
        if lease and lease not in etcd.leases:
            raise LeaseNotFound(f"etcd has no such lease for create {key}")
        etcd.revision += 1
        etcd.keys[key] = Entry(key, value, etcd.revision, etcd.revision, lease or 0)
        if self.apply_then_fail:
            self.apply_then_fail = False
            raise ClusterUnavailable(f"etcd did not answer create {key}: tried the double "
                                     "(answer lost)")
        return Outcome(True, etcd.keys[key])

    def delete(self, key: str) -> bool:
        """Remove the key."""
        etcd = self._reach(f"delete {key}")
        if etcd.keys.pop(key, None) is None:
            return False
        etcd.revision += 1
        return True

    def put(self, key: str, value: str, lease: int | None = None) -> int:
        """Write the key whatever it held (another process's write, in a test)."""
        etcd = self._reach(f"put {key}")
        etcd.revision += 1
        old = etcd.keys.get(key)
        created = old.create_revision if old is not None else etcd.revision
        etcd.keys[key] = Entry(key, value, created, etcd.revision, lease or 0)
        return etcd.revision

    def grant(self, ttl: int) -> int:
        """A new lease."""
        etcd = self._reach("grant")
        etcd.next_lease += 1
        etcd.leases[etcd.next_lease] = _Lease(ttl, etcd.clock() + ttl)
        return etcd.next_lease

    def refresh(self, lease: int) -> int:
        """Renew a lease for its TTL; 0 when it is gone."""
        etcd = self._reach("refresh")
        one = etcd.leases.get(lease)
        if one is None:
            return 0
        etcd.leases[lease] = replace(one, expires_at=etcd.clock() + one.ttl)
        return one.ttl

    def revoke(self, lease: int) -> None:
        """End a lease now."""
        self._reach("revoke").drop_lease(lease)
