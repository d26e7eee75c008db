"""Where what must outlive a process is kept: SQLite files beside the journal, or etcd.

Three things: the controller's store (notices, moves, approvals, signatures,
decisions), the run journal, and the run lock that keeps one run at a time.
A lone controller keeps them in files beside the journal (``watch.sqlite``,
``journal.sqlite``, ``journal.lock``), as it always has. With
``watch.cluster`` set, a controller runs at each site and any of them may
lead; what one leader did, the next must see, and a file at one site
excludes no one at another: all three live in the etcd cluster then, under
the deployment's prefix, shared by every controller and the CLI.

Unless the run says otherwise (``FailoverConfig.without_cluster``, ``failover
rebuild --without-cluster``): when two of the three members were lost with
two providers, etcd has no quorum, and a rebuild at the third must run on
the files. That is safe then, and only then: without quorum no controller
can be elected or act (a leader that cannot renew its lease steps down), so
the operator is the only actor (``local_state_note``).

Everything that opens one comes here (``open_store``, ``open_journal``,
``run_lock``), so that ``failover approve``, ``failover status``, the drills
and the controller always read the same one. Each kind has one interface
(``ControllerStore``, ``RunJournal``) that both its implementations meet;
the etcd ones are imported only when a cluster is configured, so a lone
controller never loads the etcd client.
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from failover.engine.journal import Journal, Outcome, RunRecord
from failover.engine.plan import Plan
from failover.exceptions import FailoverError
from failover.leadertoken import TokenSource, no_token
from failover.watch.policy import Decision, Move
from failover.watch.signals import Notice
from failover.watch.store import WatchStore, store_path

if TYPE_CHECKING:  # only a cluster's deployment loads etcd's client
    from failover.cluster.config import ClusterConfig
    from failover.cluster.etcd import EtcdCluster
    from failover.config import FailoverConfig


class RunJournal(Protocol):
    """The run journal: every run and every step, append-only (``engine.journal.Journal``,
    ``cluster.journal.EtcdJournal``); a write whose fencing token is stale raises StaleToken."""

    @property
    def where(self) -> str:
        """Where the journal is kept, for messages."""
        ...

    def newest_token(self) -> int | None: ...
    def begin(self, plan: Plan) -> str: ...
    def resumed(self, run_id: str) -> None: ...
    def step_started(self, run_id: str, index: int, action: str) -> None: ...
    def step_ended(self, run_id: str, index: int, action: str, outcome: Outcome, *,
                   error: str | None = None, result: dict[str, Any] | None = None) -> None: ...
    def ended(self, run_id: str, outcome: Outcome, error: str | None = None) -> None: ...
    def runs(self, limit: int = 20) -> list[RunRecord]: ...
    def run(self, run_id: str) -> RunRecord: ...
    def last(self) -> RunRecord | None: ...


class ControllerStore(Protocol):
    """The controller's memory (``watch.store.WatchStore``, ``cluster.store.EtcdStore``).

    Notices are kept once (the same id, or the same provider and deadline);
    a finished move answers its provider's notices; only a proposed move is
    approved, by one approver; a signature is used once while fresh;
    decisions are appended.
    """

    def add_notice(self, notice: Notice, *, reopen: bool = False) -> bool: ...
    def notices(self, *, pending: bool = True) -> list[Notice]: ...
    def withdraw_drill_notices(self, why: str) -> list[str]: ...
    def save_move(self, move: Move) -> None: ...
    def move(self, move_id: str) -> Move | None: ...
    def moves(self, *, active: bool = True) -> list[Move]: ...
    def recover_moves(self, journal: RunJournal) -> None: ...
    def approve(self, move_id: str, by: str | None = None) -> Move: ...
    def first_use(self, signature: str, timestamp: float, *, now: float,
                  max_age: float) -> bool: ...
    def add_decision(self, at: float, decision: Decision) -> None: ...
    def decisions(self, limit: int = 20, since: float = 0.0) -> list[dict[str, Any]]: ...


class RunBusy(FailoverError):
    """Another run holds the deployment's run lock."""


def state_cluster(config: FailoverConfig) -> ClusterConfig | None:
    """The cluster that keeps the store, the journal and the run lock; None: the files."""
    return None if config.local_state else config.watch.cluster


def local_state_note(config: FailoverConfig) -> str:
    """What a run on local state despite ``watch.cluster`` says first, and why it is safe."""
    return (f"without the etcd cluster: the run lock, the run journal and the controller's "
            f"store are the files beside {config.journal}, not etcd's. Safe only while etcd "
            "has no quorum: then no controller can be elected or act (a leader that cannot "
            "renew its lease steps down), so the operator is the only actor. Restore the etcd "
            "cluster before any controller runs again.")


def quorum_lost_with(config: FailoverConfig, sites: tuple[str, ...]) -> str | None:
    """How the cluster loses its quorum when ``sites`` are lost, or None if it keeps one.

    A member is lost with a site when its endpoint's host is the site's address
    (one member per site, as the lab runs them).
    """
    cluster = state_cluster(config)
    if cluster is None:
        return None
    hosts = {str(config.site(site).address) for site in sites}
    lost = [url for url in cluster.endpoints if urlsplit(url).hostname in hosts]
    if 2 * len(lost) < len(cluster.endpoints):  # a majority is left: etcd still answers
        return None
    return (f"etcd lost {len(lost)} of its {len(cluster.endpoints)} members with "
            f"{' and '.join(sites)} ({', '.join(lost)}), and with them its quorum")


@functools.cache
def _client(endpoints: tuple[str, ...], name: str, retry_timeout: float) -> EtcdCluster:
    from failover.cluster.etcd import EtcdCluster

    return EtcdCluster(endpoints, name, retry_timeout)


def cluster_client(config: ClusterConfig) -> EtcdCluster:
    """The process's one client of the cluster ``config`` names: the store, the journal and
    the run lock share its connections (the controller asks for the lock every cycle)."""
    return _client(tuple(config.endpoints), config.name, config.retry_timeout)


def open_store(config: FailoverConfig) -> ControllerStore:
    """The controller's store: in etcd with ``watch.cluster``, else beside the journal."""
    if (cluster := state_cluster(config)) is None:
        return WatchStore(store_path(config.journal))
    from failover.cluster.store import EtcdStore

    return EtcdStore(cluster_client(cluster))


def existing_store(config: FailoverConfig) -> ControllerStore | None:
    """The store to read from, or None where no controller ever wrote one (no file made)."""
    if state_cluster(config) is None and not store_path(config.journal).exists():
        return None
    return open_store(config)


def open_journal(config: FailoverConfig, token: TokenSource = no_token) -> RunJournal:
    """The run journal, whose writes carry ``token``: in etcd with ``watch.cluster``, else
    the file ``journal``."""
    if (cluster := state_cluster(config)) is None:
        return Journal(config.journal, token=token)
    from failover.cluster.journal import EtcdJournal

    return EtcdJournal(cluster_client(cluster), token=token)


def existing_journal(config: FailoverConfig) -> RunJournal | None:
    """The journal to read from, or None where nothing was ever run (no file made)."""
    if state_cluster(config) is None and not config.journal.exists():
        return None
    return open_journal(config)


@contextmanager
def run_lock(config: FailoverConfig, source: str) -> Iterator[None]:
    """Hold the deployment's run lock (one run at a time), or raise RunBusy at once.

    A lone controller's is a file lock beside the journal. With
    ``watch.cluster`` it is a key in etcd bound to a lease that this process
    renews while the run lasts: controllers at other sites and the CLI
    anywhere see it, and a holder that dies frees it within the lease's TTL.
    """
    cluster = state_cluster(config)
    if cluster is None:
        with _file_lock(config.journal.with_suffix(".lock"), source):
            yield
        return
    from failover.cluster.runlock import LockHeld, RunLock

    holder = f"{socket.gethostname()} pid {os.getpid()}"
    lock = RunLock(cluster_client(cluster), cluster.ttl, holder)
    try:
        lock.acquire()
    except LockHeld as held:
        raise RunBusy(f"another failover run is in progress for {source} ({held}); wait for "
                      "it, or see `failover status`") from None
    try:
        yield
    finally:
        lock.release()


def run_lock_held(config: FailoverConfig, source: str) -> bool:
    """Whether a run holds the deployment's run lock now (this process's or another's)."""
    cluster = state_cluster(config)
    if cluster is not None:
        from failover.cluster.runlock import RunLock

        return RunLock(cluster_client(cluster), cluster.ttl, "").holder() is not None
    try:
        with run_lock(config, source):
            return False
    except RunBusy:
        return True


@contextmanager
def _file_lock(path: Path, source: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(
                f"another failover run is in progress for {source} "
                f"(lock {path}); wait for it, or see `failover status`"
            ) from None
        yield
