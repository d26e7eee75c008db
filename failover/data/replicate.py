"""Keep copying what the primary's bucket takes to the other sites' buckets, continuously.

A move copies objects at its start and end (``objectsync``); between moves the
primary site's agent runs a ``Replicator`` on a thread, so that every object
the primary's bucket (the source) takes reaches the other sites' buckets (the
targets) within seconds.

Missing only: an object is copied when its key is missing at a target, never
over an object the target has. Media keys are immutable, so a key the target
holds is the same object; an object that differs is the business of a move's
sync (``sync_bucket``), which judges ETags, not of a loop that runs every second.

Cost: a pass lists the source once. A target is listed only on its first pass,
every ``relist_every`` seconds, and after it failed; in between its known keys
(its last listing plus what this replicator copied there) stand for it. An
idle pass over a 10,000-object bucket is ten listing requests and no others,
but parsing them takes about a second of this process's CPU whatever the
server, so ``loop`` waits at least ``IDLE_PER_LISTING`` times as long as its
last listing took: a big bucket costs some lag, not a busy agent.

Lag: each pass notes the time T0 before it lists the source. Once a pass leaves
nothing listed at T0 missing at a target, without error, the target's
watermark becomes T0, and its lag is now minus the watermark: everything
uploaded to the source before the watermark is at the target. Before a first
complete pass, and while the replicator is inactive, the lag is None (unknown).

Dark targets: each target's pass runs on a thread of its own target's pool, so a
target that waits out its timeouts holds only its own threads. Once one of its
copies finds an endpoint down or frozen, the rest are not attempted this pass
(each would wait out the same timeouts), and it is listed afresh when it
answers again (it may have been rebuilt meanwhile). ``loop`` starts no new pass
for a target still busy with an earlier one, so the others keep their pace;
``run_pass`` waits for every target, so it takes as long as the slowest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from botocore.exceptions import ReadTimeoutError

from failover.data.objects import (
    S3_ERRORS,
    Bucket,
    ObjectInfo,
    copy_failure,
    copy_object,
    unreachable,
)
from failover.exceptions import FailoverError
from failover.logs import log_event
from failover.stores import ObjectStoreConfig

log = logging.getLogger("failover.data")

IDLE_PER_LISTING = 4.0  # the loop lists the source at most a fifth of the time


@dataclass(frozen=True)
class TargetStatus:
    """How one target stands: its lag behind the source and what replication did for it."""

    active: bool  # False while the site is not an unfenced primary: nothing is copied
    lag_seconds: float | None  # now - watermark; None when unknown
    copied: int  # objects copied since start
    copied_bytes: int
    pending: int | None  # listed at the source but missing after the last pass
    error: str | None  # why the last pass fell short, None when it did not
    last_pass_at: float | None  # the T0 of the last pass that reached this target

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON-ready data."""
        data = asdict(self)
        if self.lag_seconds is not None:
            data["lag_seconds"] = round(self.lag_seconds, 3)
        return data


@dataclass
class _Target:
    """One target's state; written by its pass, read by ``status`` under the lock."""

    store: ObjectStoreConfig
    pool: ThreadPoolExecutor  # one thread for the target's pass, the rest for its copies
    bucket: Bucket | None = None
    known: set[str] | None = None  # keys it holds: its last listing plus our copies
    listed_at: float | None = None
    watermark: float | None = None
    copied: int = 0
    copied_bytes: int = 0
    pending: int | None = None
    error: str | None = None
    last_pass_at: float | None = None
    running: Future[None] | None = None


def pause(interval: float, listed_in: float) -> float:
    """Seconds to wait before the next pass: ``interval``, longer after a slow listing."""
    return max(interval, listed_in * IDLE_PER_LISTING)


def _dark(exc: BaseException) -> bool:
    """Whether an error says an endpoint is down or frozen, not that one object failed."""
    # A frozen server's kernel still accepts connections, so a copy times out
    # reading, which objects.unreachable (a dead endpoint's test) does not count.
    return unreachable(exc) or isinstance(exc, ReadTimeoutError) or isinstance(
        exc.__cause__, ReadTimeoutError)


class Replicator:
    """Copies the objects missing at each target from the source, pass after pass."""

    def __init__(
        self, source: ObjectStoreConfig, targets: Mapping[str, ObjectStoreConfig], *,
        workers: int = 4, relist_every: float = 60.0, clock: Callable[[], float] = time.time,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if relist_every < 0:
            raise ValueError(f"relist_every must not be negative, not {relist_every}")
        self.source = source
        self._workers = workers
        self._relist_every = relist_every
        self._clock = clock
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._active = True
        self._epoch = 0  # bumped when the state is forgotten: older passes record no more
        self._source: Bucket | None = None
        self._source_error: str | None = None  # the last listing's, logged when it changes
        self._targets = {
            name: _Target(store, ThreadPoolExecutor(
                workers + 1, thread_name_prefix=f"replicate-{name}"))
            for name, store in targets.items()
        }

    def __enter__(self) -> Replicator:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pools (after the loop): copies in flight finish, queued ones are skipped."""
        self._closing.set()
        for target in self._targets.values():
            target.pool.shutdown(wait=True)

    def status(self) -> dict[str, TargetStatus]:
        """Each target's status, by name."""
        now = self._clock()
        with self._lock:
            return {name: TargetStatus(
                active=self._active,
                lag_seconds=(max(0.0, now - t.watermark)
                             if self._active and t.watermark is not None else None),
                copied=t.copied, copied_bytes=t.copied_bytes, pending=t.pending,
                error=t.error, last_pass_at=t.last_pass_at,
            ) for name, t in self._targets.items()}

    def run_pass(self) -> None:
        """One pass over every target not busy with an earlier one; returns when all are done.

        Expected failures (the source or a target unreachable, an object not
        copied) are recorded in the targets' status, not raised.
        """
        wait(self._dispatch())

    def loop(self, stop: threading.Event, interval: float = 1.0,
             active: Callable[[], bool] = lambda: True) -> None:
        """Start passes ``interval`` seconds apart (see ``pause``) until ``stop`` is set.

        Never raises: an unexpected error is logged with its traceback and the
        next pass comes as usual.

        While ``active()`` is false (the site is not an unfenced primary) no
        pass runs. Going inactive forgets the targets' listings and
        watermarks, as another site's writes may have changed the targets
        meanwhile; the counts are kept. A pass does not wait for its targets
        here, so a dark one does not hold back the others.
        """
        log_event(log, "objects.replicate.start", bucket=self.source.bucket,
                  targets=",".join(self._targets) or "-", interval=interval)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._set_active(active())
                if self._active:
                    self._dispatch()
            except Exception:  # the agent's thread must outlive any one pass
                log.exception("event=objects.replicate.error where=loop")
            # The targets' passes run on their own threads: what was spent here
            # is the source's listing.
            stop.wait(pause(interval, time.monotonic() - started))
        log_event(log, "objects.replicate.stop")

    # --- One pass ------------------------------------------------------------

    def _set_active(self, active: bool) -> None:
        with self._lock:
            if active == self._active:
                return
            self._active = active
            if not active:
                self._epoch += 1
                for t in self._targets.values():
                    t.known = t.listed_at = t.watermark = t.pending = t.error = None
        log_event(log, "objects.replicate.active", active=active)

    def _dispatch(self) -> list[Future[None]]:
        """List the source and start a pass for each idle target; their futures."""
        t0 = self._clock()
        idle = {name: t for name, t in self._targets.items()
                if t.running is None or t.running.done()}
        if not idle:
            return []  # nobody to list the source for
        with self._lock:
            epoch = self._epoch
        try:
            if self._source is None:  # a client per endpoint, made once: ~0.2 s each
                connections = self._workers * len(self._targets) + 2
                self._source = Bucket(self.source, connections)
            listing = self._source.list()
        except FailoverError as exc:
            with self._lock:
                for t in idle.values():
                    t.error, t.last_pass_at = f"source: {exc}", t0
            if str(exc) != self._source_error:  # once, not every second while it lasts
                log_event(log, "objects.replicate.source", outcome="failed", detail=str(exc))
                self._source_error = str(exc)
            return []
        if self._source_error is not None:
            log_event(log, "objects.replicate.source", outcome="listed", objects=len(listing))
            self._source_error = None
        for name, t in idle.items():
            t.running = t.pool.submit(self._pass_target, name, t, listing, t0, epoch)
        return [t.running for t in idle.values() if t.running is not None]

    def _pass_target(self, name: str, target: _Target, listing: Mapping[str, ObjectInfo],
                     t0: float, epoch: int) -> None:
        """One target's part of a pass: list it if due, copy what it lacks, record the outcome.

        Never raises: it runs on the target's pool, where an exception would go unseen.
        """
        started = time.monotonic()
        known, listed_at = target.known, target.listed_at
        before, error, dark = target.copied, None, False
        try:
            if target.bucket is None:
                target.bucket = Bucket(target.store, self._workers + 2)
            if known is None or listed_at is None or t0 - listed_at >= self._relist_every:
                known, listed_at = set(target.bucket.list()), t0
            error, dark = self._copy_missing(target, target.bucket, listing, known)
        except FailoverError as exc:  # listing it failed: all we know is the old listing
            error, dark = str(exc), True
        except Exception as exc:  # a pass thread must not die with its reason unsaid
            log.exception("event=objects.replicate.error where=target target=%s", name)
            error, dark = f"{type(exc).__name__}: {exc}", True
        pending = None if known is None else sum(1 for k in listing if k not in known)
        with self._lock:
            copied = target.copied - before
            if epoch != self._epoch:
                return  # forgotten meanwhile: the site stopped being the primary
            was = target.error
            target.error, target.pending, target.last_pass_at = error, pending, t0
            target.known = known
            # After a failure, list again: a target that went dark may come back rebuilt.
            target.listed_at = None if dark else listed_at
            if pending == 0 and error is None:  # a dark target's old listing proves nothing
                target.watermark = t0
        if copied or error != was:
            log_event(log, "objects.replicate", target=name, copied=copied, pending=pending,
                      error=error or "-", seconds=f"{time.monotonic() - started:.2f}")

    def _copy_missing(
        self, target: _Target, bucket: Bucket, listing: Mapping[str, ObjectInfo],
        known: set[str],
    ) -> tuple[str | None, bool]:
        """Copy the listed keys the target lacks, adding each to ``known``.

        Returns why some were not copied (None if all were) and whether the target went dark.
        """
        source = self._source
        assert source is not None  # listed by _dispatch
        down: list[str] = []  # the first endpoint-level failure: the rest are not attempted

        def copy_one(key: str) -> ObjectInfo | None:
            if down or self._closing.is_set():
                return None
            try:
                return copy_object(source, bucket, key)
            except S3_ERRORS as exc:
                if _dark(exc):
                    down.append(copy_failure(exc))
                raise

        futures = {target.pool.submit(copy_one, key): key
                   for key in listing if key not in known}
        failed: list[str] = []
        for future in as_completed(futures):
            key = futures[future]
            try:
                read = future.result()
            except S3_ERRORS as exc:
                failed.append(f"{key}: {copy_failure(exc)}")
                continue
            if read is not None:
                known.add(key)
                with self._lock:
                    target.copied += 1
                    target.copied_bytes += read.size
        if down:
            return down[0], True
        if failed:
            failed.sort()
            return f"{len(failed)} not copied, first {failed[0]}", False
        return None, False
