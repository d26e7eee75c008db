"""Object storage: copy what one site's bucket lacks from another's, then check.

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
metadata (``x-amz-meta-failover-source-etag``). When sizes match but ETags
do not, one HeadObject at the target settles it (its recorded source ETag is
the source's ETag), and if not, one at the source (the source is itself a
copy, e.g. when failing back, of what the target holds). Objects with equal
ETags, the common case, cost nothing beyond one listing per side.

Retry policy: botocore retries each call up to twice more (``standard``
mode, with backoff), which is safe for everything here: listings, HEADs and
GETs only read, and a PUT or a part writes the whole of the same bytes again.
If an endpoint stops answering during a sync, the objects not yet started
are not attempted (each would only wait out the same timeouts); they are
reported as failed, and the next sync picks them up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from failover.aws import load_credentials
from failover.config import ObjectStoreConfig
from failover.exceptions import ConfigError, FailoverError, ProviderError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("failover.data")

PROVIDER = "s3"
SOURCE_ETAG_KEY = "failover-source-etag"  # user metadata on every copy
CONNECT_TIMEOUT = 5.0
MAX_ATTEMPTS = 3
PART_SIZE = 8 * 1024 * 1024

# The bodies stream from GET to PUT; each worker holds at most one part in
# memory. Parallelism is across objects, so each upload uses no threads of its own.
_TRANSFER = TransferConfig(
    multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, use_threads=False,
)
_CREDENTIAL_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "ExpiredToken", "InvalidToken", "TokenRefreshRequired"}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_Errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, Boto3Error,
           OSError)


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing shows it."""

    key: str
    size: int
    etag: str  # without quotes


@dataclass(frozen=True)
class SyncProgress:
    """How far a sync is: objects and bytes handled (copied or failed) of those to copy."""

    done: int
    total: int
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True)
class SyncResult:
    """What one sync did."""

    copied: int
    copied_bytes: int
    unchanged: int
    extra_at_target: int  # keys only at the target: reported, never deleted
    failed: tuple[str, ...]  # "key: reason"
    seconds: float
    # The source's keys when the sync listed it: what this sync answers for.
    # Objects written after that are the next sync's work, not this one's failure.
    listed: frozenset[str] = field(default=frozenset(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (the listed keys left out: counts say enough)."""
        data = {**asdict(self), "failed": list(self.failed), "seconds": round(self.seconds, 3)}
        del data["listed"]
        return data


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


def s3_client(store: ObjectStoreConfig, *, max_connections: int = 10) -> S3Client:
    """A boto3 S3 client for a site's store, with keys from its credentials file."""
    keys = load_credentials(store.credentials_file) if store.credentials_file else {}
    session = boto3.session.Session(
        aws_access_key_id=keys.get("aws_access_key_id"),
        aws_secret_access_key=keys.get("aws_secret_access_key"),
        aws_session_token=keys.get("aws_session_token"),
        region_name=store.region,
    )
    config = Config(
        connect_timeout=min(CONNECT_TIMEOUT, store.timeout), read_timeout=store.timeout,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=max_connections,
    )
    return session.client("s3", endpoint_url=store.endpoint_url, config=config)


def _translate(
    exc: Exception, *, doing: str, bucket: str, endpoint: str,
    credentials_file: Path | None = None, timeouts: tuple[float, float] = (0.0, 0.0),
) -> FailoverError:
    """A boto3/botocore error as one sentence naming the bucket, the endpoint, what to do."""
    where = f"bucket {bucket!r} at {endpoint}"
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        request_id = exc.response.get("ResponseMetadata", {}).get("RequestId")
        if code == "NoSuchBucket":
            text = (f"{where} does not exist; create it, or correct the site's "
                    "objects.bucket or objects.endpoint_url")
        elif code in _CREDENTIAL_CODES:
            keys = f"the keys in {credentials_file}" if credentials_file else "the site's AWS keys"
            text = (f"{endpoint} refused to {doing} bucket {bucket!r} ({code}); "
                    f"check {keys} and their permissions on the bucket")
        else:
            text = f"{endpoint} refused to {doing} {where}: {code}: {error.get('Message', exc)}"
        return ProviderError(text, provider=PROVIDER, code=code, request_id=request_id)
    if isinstance(exc, (botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError)):
        return ProviderError(
            f"no answer from {endpoint} in time ({timeouts[0]:g}s to connect, "
            f"{timeouts[1]:g}s to read) to {doing} {where}; check that the endpoint is up "
            "and reachable from here",
            provider=PROVIDER, code="TIMEOUT",
        )
    if isinstance(exc, botocore.exceptions.ConnectionError):
        return ProviderError(  # botocore's own message repeats the whole URL
            f"cannot connect to {endpoint} to {doing} {where}; check that the endpoint is up "
            "and the site's objects.endpoint_url is right",
            provider=PROVIDER, code="UNREACHABLE",
        )
    if isinstance(exc, (botocore.exceptions.NoCredentialsError,
                        botocore.exceptions.PartialCredentialsError)):
        return ConfigError(f"no AWS keys for {where}; set objects.credentials_file")
    return ProviderError(f"cannot {doing} {where}: {exc}", provider=PROVIDER)


@contextmanager
def _calling(client: S3Client, bucket: str, doing: str,
             credentials_file: Path | None = None) -> Iterator[None]:
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        config = client.meta.config  # botocore's stubs do not declare the timeouts
        timeouts = (getattr(config, "connect_timeout", 0.0), getattr(config, "read_timeout", 0.0))
        raise _translate(exc, doing=doing, bucket=bucket, endpoint=client.meta.endpoint_url,
                         credentials_file=credentials_file, timeouts=timeouts) from exc


def _etag(value: str) -> str:
    return value.strip('"')


def _list(client: S3Client, bucket: str) -> dict[str, ObjectInfo]:
    objects: dict[str, ObjectInfo] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            key = item["Key"]
            objects[key] = ObjectInfo(key, item["Size"], _etag(item["ETag"]))
    return objects


def list_objects(client: S3Client, bucket: str) -> dict[str, ObjectInfo]:
    """Every object in a bucket by key (ListObjectsV2, page by page)."""
    with _calling(client, bucket, "list the objects of"):
        return _list(client, bucket)


class _Side:
    """One end of a sync: its config and a client for it."""

    def __init__(self, store: ObjectStoreConfig, connections: int) -> None:
        self.store = store
        self.bucket = store.bucket
        self.client = s3_client(store, max_connections=connections)
        self.endpoint = self.client.meta.endpoint_url

    def list(self) -> dict[str, ObjectInfo]:
        with _calling(self.client, self.bucket, "list the objects of",
                      self.store.credentials_file):
            return _list(self.client, self.bucket)

    def recorded_source_etag(self, key: str) -> str | None:
        """The ETag this object was copied from, if failover copied it (None on any error)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except _Errors:
            return None  # unknown counts as different: at worst one copy too many
        return head.get("Metadata", {}).get(SOURCE_ETAG_KEY)


@dataclass(frozen=True)
class _Comparison:
    to_copy: tuple[ObjectInfo, ...]  # missing at the target or different there
    missing: tuple[str, ...]
    differing: tuple[str, ...]
    same: int
    extra: int


def _same_by_metadata(source: _Side, target: _Side, src: ObjectInfo, dst: ObjectInfo) -> bool:
    """Whether equal-size objects with unequal ETags are copies of one another."""
    at_target = target.recorded_source_etag(dst.key)
    if at_target == src.etag:
        return True  # the target is our copy of this very source object
    at_source = source.recorded_source_etag(src.key)
    # The source is a copy of what the target holds (a fail-back), or both are
    # copies of one original.
    return at_source is not None and at_source in (dst.etag, at_target)


def _compare(
    source: _Side, target: _Side, src_objects: dict[str, ObjectInfo],
    dst_objects: dict[str, ObjectInfo], pool: ThreadPoolExecutor,
) -> _Comparison:
    missing = [o for k, o in src_objects.items() if k not in dst_objects]
    differing = [o for k, o in src_objects.items()
                 if k in dst_objects and o.size != dst_objects[k].size]
    unsure = [o for k, o in src_objects.items() if k in dst_objects
              and o.size == dst_objects[k].size and o.etag != dst_objects[k].etag]
    verdicts = pool.map(lambda o: _same_by_metadata(source, target, o, dst_objects[o.key]),
                        unsure)
    differing += [o for o, same in zip(unsure, verdicts, strict=True) if not same]
    return _Comparison(
        to_copy=tuple(missing + differing),
        missing=tuple(sorted(o.key for o in missing)),
        differing=tuple(sorted(o.key for o in differing)),
        same=len(src_objects) - len(missing) - len(differing),
        extra=sum(1 for k in dst_objects if k not in src_objects),
    )


def _copy(source: _Side, target: _Side, key: str) -> int:
    """Stream one object from source to target with its headers; returns its size."""
    got = source.client.get_object(Bucket=source.bucket, Key=key)
    body = got["Body"]
    try:
        extra: dict[str, Any] = {
            "ContentType": got.get("ContentType", "binary/octet-stream"),
            # The ETag of what was read, not of the listing: the object may have changed since.
            "Metadata": {**got.get("Metadata", {}), SOURCE_ETAG_KEY: _etag(got["ETag"])},
        }
        for name in ("CacheControl", "ContentDisposition", "ContentEncoding",
                     "ContentLanguage"):
            if got.get(name):
                extra[name] = got[name]
        target.client.upload_fileobj(body, target.bucket, key, ExtraArgs=extra,
                                     Config=_TRANSFER)
    finally:
        body.close()
    return got["ContentLength"]


def _unwrap(exc: BaseException) -> BaseException:
    # boto3 wraps some upload errors (S3UploadFailedError); the cause says more.
    cause = exc.__cause__ or exc.__context__
    return cause if isinstance(exc, Boto3Error) and cause is not None else exc


def _reason(exc: BaseException) -> str:
    """Why one object was not copied, in a few words."""
    exc = _unwrap(exc)
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        if code in _NOT_FOUND_CODES and exc.operation_name == "GetObject":
            return "gone from the source since it was listed"
        return f"{exc.operation_name}: {code}: {error.get('Message', '')}".rstrip(": ")
    return str(exc) or type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    return isinstance(_unwrap(exc), (botocore.exceptions.EndpointConnectionError,
                                     botocore.exceptions.ConnectTimeoutError))


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
    src, dst = _Side(source, workers + 2), _Side(target, workers + 2)
    src_objects, dst_objects = src.list(), dst.list()
    down = threading.Event()
    down_reason: list[str] = []

    def copy_one(key: str) -> int:
        if down.is_set():
            raise _EndpointDown(f"not attempted: {down_reason[0]}")
        try:
            return _copy(src, dst, key)
        except _Errors as exc:
            if _unreachable(exc) and not down.is_set():
                down_reason.append(f"{_reason(exc)}")
                down.set()
            raise

    with ThreadPoolExecutor(workers, thread_name_prefix="objects-sync") as pool:
        plan = _compare(src, dst, src_objects, dst_objects, pool)
        if only_missing:
            missing = set(plan.missing)
            plan = replace(
                plan, to_copy=tuple(o for o in plan.to_copy if o.key in missing),
                same=plan.same + len(plan.differing), differing=(),
            )
        # Largest first, so one big object does not start last and finish alone.
        todo = sorted(plan.to_copy, key=lambda o: (-o.size, o.key))
        total_bytes = sum(o.size for o in todo)
        done = done_bytes = copied = copied_bytes = 0
        failed: list[str] = []
        if progress:
            progress(SyncProgress(0, len(todo), 0, total_bytes))
        futures: dict[Future[int], ObjectInfo] = {pool.submit(copy_one, o.key): o for o in todo}
        for future in as_completed(futures):
            info = futures[future]
            try:
                size = future.result()
            except (*_Errors, _EndpointDown) as exc:
                failed.append(f"{info.key}: {_reason(exc)}")
            else:
                copied, copied_bytes = copied + 1, copied_bytes + size
            done, done_bytes = done + 1, done_bytes + info.size
            if progress:
                progress(SyncProgress(done, len(todo), done_bytes, total_bytes))
    result = SyncResult(
        copied=copied, copied_bytes=copied_bytes, unchanged=plan.same,
        extra_at_target=plan.extra, failed=tuple(sorted(failed)),
        seconds=time.monotonic() - started, listed=frozenset(src_objects),
    )
    log.info(
        "event=objects.sync source=%s/%s target=%s/%s copied=%d bytes=%d unchanged=%d "
        "extra=%d failed=%d seconds=%.2f", src.endpoint, src.bucket, dst.endpoint, dst.bucket,
        result.copied, result.copied_bytes, result.unchanged, result.extra_at_target,
        len(result.failed), result.seconds,
    )
    return result


def verify_bucket(
    source: ObjectStoreConfig, target: ObjectStoreConfig, *, workers: int = 8,
    only: Collection[str] | None = None,
) -> VerifyResult:
    """Compare both listings by key, size and ETag (and recorded source ETag).

    ``only`` limits the check to those source keys (a sync's ``listed``): the
    source of a live site keeps taking objects while it is verified.
    """
    src, dst = _Side(source, workers + 2), _Side(target, workers + 2)
    src_objects, dst_objects = src.list(), dst.list()
    if only is not None:
        src_objects = {k: v for k, v in src_objects.items() if k in only}
    with ThreadPoolExecutor(workers, thread_name_prefix="objects-verify") as pool:
        plan = _compare(src, dst, src_objects, dst_objects, pool)
    result = VerifyResult(plan.missing, plan.differing, len(src_objects))
    log.info(
        "event=objects.verify source=%s/%s target=%s/%s checked=%d missing=%d differing=%d",
        src.endpoint, src.bucket, dst.endpoint, dst.bucket, result.checked,
        len(result.missing), len(result.differing),
    )
    return result
