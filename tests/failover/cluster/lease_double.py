"""The etcd double with what the primary's lease needs besides the election's calls.

``etcd_double.Link`` keeps keys, revisions and leases on the test's clock; this
adds the conditional swap, a lease's time to live and the cluster's revision,
as ``etcd.EtcdCluster`` has them. It is still not etcd: the real calls are
tested against real members (the lab tests of the lease).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from failover.cluster.etcd import Entry, Outcome
from failover.cluster.ops import Compare, Delete, Put, TxnResult
from tests.failover.cluster.etcd_double import EtcdDouble, Link


class LeaseLink(Link):
    """A process's way to the double, with ``swap``, ``ttl`` and ``revision``."""

    def swap(self, key: str, value: str, mod_revision: int,
             lease: int | None = None) -> Outcome:
        """Write the key only if its last write was at ``mod_revision`` (0: if absent)."""
        etcd = self._reach(f"swap {key}")
        old = etcd.keys.get(key)
        if (old.mod_revision if old is not None else 0) != mod_revision:
            return Outcome(False, old)
        etcd.revision += 1
        created = old.create_revision if old is not None else etcd.revision
        etcd.keys[key] = Entry(key, value, created, etcd.revision, lease or 0)
        return Outcome(True, etcd.keys[key])

    def ttl(self, lease: int) -> int:
        """Whole seconds the lease has left, rounded down as etcd does; 0 when gone."""
        etcd = self._reach("ttl")
        one = etcd.leases.get(lease)
        return 0 if one is None else max(0, math.floor(one.expires_at - etcd.clock()))

    def revision(self) -> int:
        """The double's current revision."""
        return self._reach("revision").revision

    def txn(self, compares: Sequence[Compare], success: Sequence[Put | Delete],
            failure: Sequence[Put | Delete] = ()) -> TxnResult:
        """The transactions the decision needs: EQUAL on CREATE or MOD; puts."""
        etcd = self._reach("txn")

        def holds(compare: Compare) -> bool:
            entry = etcd.keys.get(compare.key)
            have = 0 if entry is None else (
                entry.create_revision if compare.target == "CREATE" else entry.mod_revision)
            assert compare.result == "EQUAL" and compare.target in ("CREATE", "MOD")
            return have == compare.against

        succeeded = all(holds(c) for c in compares)
        ops = success if succeeded else failure
        if ops:
            etcd.revision += 1
        for op in ops:
            assert isinstance(op, Put)
            old = etcd.keys.get(op.key)
            created = old.create_revision if old is not None else etcd.revision
            etcd.keys[op.key] = Entry(op.key, op.value, created, etcd.revision, op.lease or 0)
        return TxnResult(succeeded, etcd.revision)


def lease_link(etcd: EtcdDouble) -> LeaseLink:
    """A new way to the double."""
    return LeaseLink(etcd)
