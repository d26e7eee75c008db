"""Copy what one site's bucket lacks from another's, then check the copy.

The two sites are two S3 endpoints (two providers, or two moto servers in the
lab), so nothing is copied server-side: each object is read from the source
and streamed into the target by a pool of workers. Only objects that are
missing at the target or differ there are copied; objects found only at the
target are counted and left alone (a sync never deletes).

When two objects are the same: equal size, and equal ETag. A single PUT's
ETag is the MD5 of the body, but an object uploaded in parts has an ETag like
``"<md5 of the parts' md5s>-3"`` that depends on the part size, and an
encrypted object's ETag is no MD5 at all, so a copy's ETag need not match its
original's. Every copy therefore carries the ETag it was copied from in its
metadata. When sizes match but ETags do not, one HeadObject at the target
settles it (its recorded source ETag is the source's ETag), and if not, one
at the source (the source is itself a copy, e.g. when failing back, of what
the target holds). Objects with equal ETags, the common case, cost nothing
beyond one listing per side.

A sync answers for what it listed. Its result keeps that snapshot (with each
copied object as the copy read it), and verification compares the target
with the snapshot, not with a new listing of a source that keeps taking
objects: what was written after the listing is the next sync's work.

If an endpoint stops answering during a sync, the objects not yet started
are not attempted (each would only wait out the same timeouts); they are
reported as failed, and the next sync picks them up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

from failover.data.objects import (
    S3_ERRORS,
    Bucket,
    ObjectInfo,
    copy_failure,
    copy_object,
    unreachable,
)
from failover.stores import ObjectStoreConfig

log = logging.getLogger("failover.data")

Same = Callable[[ObjectInfo, ObjectInfo], bool]  # judges equal sizes with unequal ETags
Mapper = Callable[[Callable[[ObjectInfo], bool], Iterable[ObjectInfo]], Iterable[bool]]
Recorded = Callable[[str], str | None]  # a key's recorded source ETag at one side


@dataclass(frozen=True)
class SyncProgress:
    """How far a sync is: objects and bytes handled (copied or failed) of those to copy."""

    done: int
    total: int
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True)
class FailedObject:
    """One object a sync did not copy, and why."""

    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


@dataclass(frozen=True)
class SyncResult:
    """What one sync did."""

    copied: int
    copied_bytes: int
    unchanged: int
    extra_at_target: int  # keys only at the target: reported, never deleted
    failed: tuple[FailedObject, ...]  # by key
    seconds: float
    # The source as this sync listed it, each copied object as the copy read
    # it: what this sync answers for, and what its verification checks.
    snapshot: Mapping[str, ObjectInfo] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (the snapshot left out: counts say enough)."""
        return {
            "copied": self.copied, "copied_bytes": self.copied_bytes,
            "unchanged": self.unchanged, "extra_at_target": self.extra_at_target,
            "failed": [{"key": f.key, "reason": f.reason} for f in self.failed],
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class VerifyResult:
    """How the target compares with the source, object by object."""

    missing: tuple[str, ...]
    differing: tuple[str, ...]
    checked: int

    @property
    def ok(self) -> bool:
        """Whether every source object is at the target, the same."""
        return not self.missing and not self.differing

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {"ok": self.ok, "missing": list(self.missing),
                "differing": list(self.differing), "checked": self.checked}


# --- Comparing two listings (no I/O but the HEADs ``same`` may make) -------


def copies_of_one_another(
    src: ObjectInfo, dst: ObjectInfo, at_target: Recorded, at_source: Recorded,
) -> bool:
    """Whether equal-size objects with unequal ETags are copies of one another."""
    recorded = at_target(dst.key)
    if recorded == src.etag:
        return True  # the target is our copy of this very source object
    original = at_source(src.key)
    # The source is a copy of what the target holds (a fail-back), or both are
    # copies of one original.
    return original is not None and original in (dst.etag, recorded)


@dataclass(frozen=True)
class Comparison:
    """How a target listing stands against a source listing."""

    to_copy: tuple[ObjectInfo, ...]  # missing at the target or different there
    missing: tuple[str, ...]
    differing: tuple[str, ...]
    same: int
    extra: int


def compare(
    source: Mapping[str, ObjectInfo], target: Mapping[str, ObjectInfo], same: Same,
    mapper: Mapper = map,
) -> Comparison:
    """Compare by key, size and ETag; ``same`` judges equal sizes with unequal ETags.

    ``mapper`` runs ``same`` over those pairs (a pool's ``map``: each may
    cost a HEAD or two).
    """
    missing = [o for k, o in source.items() if k not in target]
    differing = [o for k, o in source.items() if k in target and o.size != target[k].size]
    unsure = [o for k, o in source.items()
              if k in target and o.size == target[k].size and o.etag != target[k].etag]
    verdicts = mapper(lambda o: same(o, target[o.key]), unsure)
    differing += [o for o, alike in zip(unsure, verdicts, strict=True) if not alike]
    return Comparison(
        to_copy=tuple(missing + differing),
        missing=tuple(sorted(o.key for o in missing)),
        differing=tuple(sorted(o.key for o in differing)),
        same=len(source) - len(missing) - len(differing),
        extra=sum(1 for k in target if k not in source),
    )


def verify_listing(
    snapshot: Mapping[str, ObjectInfo], target: Mapping[str, ObjectInfo], same: Same,
    mapper: Mapper = map,
) -> VerifyResult:
    """How a target's listing stands against the source's (a sync's snapshot)."""
    plan = compare(snapshot, target, same, mapper)
    return VerifyResult(plan.missing, plan.differing, len(snapshot))


def problems(result: SyncResult, verified: VerifyResult, target: str, *,
             only_missing: bool) -> list[str]:
    """What a sync and its verification left wrong at ``target``, a sentence each.

    An object whose copy failed is named once, with the failure's reason. With
    ``only_missing`` an object that differs at the target is no problem: the
    target took it after the move began and its copy is the newer.
    """
    failed = {f.key for f in result.failed}
    found = [str(f) for f in result.failed]
    found += [f"missing at {target}: {k}" for k in verified.missing if k not in failed]
    if not only_missing:
        found += [f"differs at {target}: {k}" for k in verified.differing if k not in failed]
    return found


# --- Sync and verify --------------------------------------------------------


def _judge(source: Bucket, target: Bucket) -> Same:
    return lambda src, dst: copies_of_one_another(
        src, dst, target.recorded_source_etag, source.recorded_source_etag)


class _EndpointDown(Exception):
    """An earlier copy found an endpoint unreachable; this one was not attempted."""


def sync_bucket(
    source: ObjectStoreConfig, target: ObjectStoreConfig, *, workers: int = 8,
    progress: Callable[[SyncProgress], None] | None = None, only_missing: bool = False,
) -> SyncResult:
    """Copy every object missing or different at the target; delete nothing.

    With ``only_missing``, objects the target has are left alone even when they
    differ: after a move the target is where writes go, and its copy is newer.

    ``progress`` is called from the calling thread, once before the first copy
    and once as each object is done (copied or failed).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    started = time.monotonic()
    src, dst = Bucket(source, workers + 2), Bucket(target, workers + 2)
    snapshot, dst_objects = src.list(), dst.list()
    down = threading.Event()
    down_reason: list[str] = []

    def copy_one(key: str) -> ObjectInfo:
        if down.is_set():
            raise _EndpointDown(f"not attempted: {down_reason[0]}")
        try:
            return copy_object(src, dst, key)
        except S3_ERRORS as exc:
            if unreachable(exc) and not down.is_set():
                down_reason.append(copy_failure(exc))
                down.set()
            raise

    with ThreadPoolExecutor(workers, thread_name_prefix="objects-sync") as pool:
        plan = compare(snapshot, dst_objects, _judge(src, dst), pool.map)
        if only_missing:
            missing = set(plan.missing)
            plan = replace(
                plan, to_copy=tuple(o for o in plan.to_copy if o.key in missing),
                same=plan.same + len(plan.differing), differing=(),
            )
        # Largest first, so one big object does not start last and finish alone.
        todo = sorted(plan.to_copy, key=lambda o: (-o.size, o.key))
        total_bytes = sum(o.size for o in todo)
        done = done_bytes = copied_bytes = 0
        copies: list[ObjectInfo] = []
        failed: list[FailedObject] = []
        if progress:
            progress(SyncProgress(0, len(todo), 0, total_bytes))
        futures: dict[Future[ObjectInfo], ObjectInfo] = {
            pool.submit(copy_one, o.key): o for o in todo}
        for future in as_completed(futures):
            info = futures[future]
            try:
                read = future.result()
            except (*S3_ERRORS, _EndpointDown) as exc:
                failed.append(FailedObject(info.key, copy_failure(exc)))
            else:
                copies.append(read)
                copied_bytes += read.size
            done, done_bytes = done + 1, done_bytes + info.size
            if progress:
                progress(SyncProgress(done, len(todo), done_bytes, total_bytes))
    result = SyncResult(
        copied=len(copies), copied_bytes=copied_bytes, unchanged=plan.same,
        extra_at_target=plan.extra, failed=tuple(sorted(failed, key=lambda f: f.key)),
        seconds=time.monotonic() - started,
        snapshot={**snapshot, **{c.key: c for c in copies}},
    )
    log.info(
        "event=objects.sync source=%s target=%s copied=%d bytes=%d unchanged=%d "
        "extra=%d failed=%d seconds=%.2f", src, dst, result.copied, result.copied_bytes,
        result.unchanged, result.extra_at_target, len(result.failed), result.seconds,
    )
    return result


def verify_bucket(
    source: ObjectStoreConfig, target: ObjectStoreConfig, *, workers: int = 8,
    snapshot: Mapping[str, ObjectInfo] | None = None,
) -> VerifyResult:
    """Compare the target with the source by key, size and ETag (and recorded source ETag).

    With a ``snapshot`` (a sync's), the target is checked against it rather
    than against a new listing of the source: a live site's bucket keeps
    taking objects while it is verified. The source is still asked, object
    by object, when only its recorded source ETag can settle a comparison.
    """
    src, dst = Bucket(source, workers + 2), Bucket(target, workers + 2)
    src_objects = src.list() if snapshot is None else snapshot
    dst_objects = dst.list()
    with ThreadPoolExecutor(workers, thread_name_prefix="objects-verify") as pool:
        result = verify_listing(src_objects, dst_objects, _judge(src, dst), pool.map)
    log.info(
        "event=objects.verify source=%s target=%s checked=%d missing=%d differing=%d "
        "snapshot=%s", src, dst, result.checked, len(result.missing), len(result.differing),
        snapshot is not None,
    )
    return result
