"""The deployment's run lock in etcd: one run at a time, whichever site it is started at.

A lone controller keeps one run at a time with a file lock beside the
journal; with a controller at each site (and the CLI run anywhere) a file
excludes no one, so the lock is the key ``runlock`` in etcd, created only if
absent and bound to a lease of the cluster's TTL. While the run lasts a
thread of the holder renews the lease every third of the TTL; released, the
lease is revoked and the key goes with it. A holder that dies, or whose site
goes dark, stops renewing: etcd deletes the key within the TTL, and the next
leader may resume the run (the journal's fencing tokens refuse whatever the
old holder still writes).

A holder that died on this host (a run killed mid-plan, then the same
command again) is known dead by its PID, which the key records with the
host's name: its lease is revoked and the lock taken at once, as the file
lock's would be, rather than after the TTL.

A holder that loses its lease while running (etcd out of its reach for a
TTL) is told in its log (``runlock.lost``) and runs on: what keeps two runs
apart then is the fencing token every step's writes carry, not the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime

from failover import logs
from failover.cluster.etcd import Entry, EtcdCluster
from failover.cluster.exceptions import ClusterUnavailable, LeaseNotFound
from failover.exceptions import FailoverError

RUN_LOCK_KEY = "runlock"
log = logging.getLogger("failover.cluster")


class LockHeld(FailoverError):
    """Another process holds the run lock; the message says who and since when."""


def _dead_here(entry: Entry) -> bool:
    """Whether the entry's holder was a process of this host that no longer runs."""
    try:
        data = json.loads(entry.value)
        host, pid = data["host"], int(data["pid"])
    except (ValueError, KeyError, TypeError):
        return False  # written by another version: left to its lease
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _holder(entry: Entry) -> str:
    try:
        data = json.loads(entry.value)
        since = datetime.fromtimestamp(float(data["since"]), UTC).strftime("%H:%M:%SZ")
        return f"{data['holder']} since {since}"
    except (ValueError, KeyError, TypeError):
        return entry.value[:80]


class RunLock:
    """The run lock of the cluster's deployment; ``holder`` names this process in it."""

    def __init__(self, cluster: EtcdCluster, ttl: int, holder: str) -> None:
        self.cluster = cluster
        self.ttl = ttl
        self.name = holder
        self._lease: int | None = None
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def holder(self) -> str | None:
        """Who holds the lock now, and since when; None: no one (or a process here that died)."""
        entry = self.cluster.get(RUN_LOCK_KEY)
        return None if entry is None or _dead_here(entry) else _holder(entry)

    def acquire(self) -> None:
        """Take the lock and keep it until ``release``; LockHeld when another has it."""
        lease = self.cluster.grant(self.ttl)
        value = json.dumps({"holder": self.name, "since": time.time(),
                            "host": socket.gethostname(), "pid": os.getpid()})
        try:
            outcome = self.cluster.create(RUN_LOCK_KEY, value, lease)
            entry = outcome.entry
            if entry is not None and entry.lease != lease and _dead_here(entry):
                # Its key goes with its lease; a third process that takes the lock first
                # wins the create below, and this one is refused as usual.
                logs.log_event(log, "runlock.dead_holder", holder=_holder(entry))
                self._revoke(entry.lease)
                entry = self.cluster.create(RUN_LOCK_KEY, value, lease).entry
        except (ClusterUnavailable, LeaseNotFound):
            self._revoke(lease)
            raise
        # Ours also when a retried create saw its own first try's key (etcd.Outcome).
        if entry is None or entry.lease != lease:
            self._revoke(lease)
            raise LockHeld("the run lock in etcd is held by " +
                           (_holder(entry) if entry is not None else "someone who just let go"))
        self._lease = lease
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep, args=(lease,), daemon=True,
                                        name="run-lock")
        self._keeper.start()
        logs.log_event(log, "runlock.taken", holder=self.name, lease=f"{lease:x}")

    def release(self) -> None:
        """Let the lock go now (revoke its lease); one not revoked expires by itself."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
            self._keeper = None
        if self._lease is not None:
            self._revoke(self._lease)
            logs.log_event(log, "runlock.released", holder=self.name)
            self._lease = None

    def _keep(self, lease: int) -> None:
        """Renew the lease every third of its TTL until released or lost."""
        while not self._stop.wait(self.ttl / 3):
            try:
                if self.cluster.refresh(lease) == 0:
                    break
            except LeaseNotFound:
                break
            except ClusterUnavailable as exc:  # tried again at the next third
                logs.log_event(log, "runlock.unrenewed", holder=self.name, error=str(exc))
        else:
            return
        logs.log_event(log, "runlock.lost", holder=self.name,
                       detail="the lease expired: another may take the lock")

    def _revoke(self, lease: int) -> None:
        with contextlib.suppress(ClusterUnavailable):
            self.cluster.revoke(lease)
