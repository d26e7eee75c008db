"""Object storage at one S3 endpoint: a client, its errors in one sentence, listings, copies.

A site's objects live in one bucket at one S3 endpoint (a provider's, or a
moto server in the lab). This module talks to one endpoint at a time: it
lists a bucket, reads the ETag a copy was made from, and streams one object
from one endpoint into another. Deciding what to copy and checking the
result is ``objectsync``'s work.

Every copy carries the ETag it was copied from in its metadata
(``x-amz-meta-failover-source-etag``), because a copy's own ETag need not
match its original's (see ``objectsync`` for when two objects are the same).

Retry policy: botocore retries each call up to twice more (``standard``
mode, with backoff), which is safe for everything here: listings, HEADs and
GETs only read, and a PUT or a part writes the whole of the same bytes again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from failover.aws import load_credentials
from failover.awssession import session
from failover.exceptions import ConfigError, FailoverError, ProviderError
from failover.stores import ObjectStoreConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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
# What a call to an endpoint may raise: the errors a copy of one object is failed for.
S3_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, Boto3Error,
             OSError)


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing shows it."""

    key: str
    size: int
    etag: str  # without quotes


def s3_client(store: ObjectStoreConfig, *, max_connections: int = 10) -> S3Client:
    """A boto3 S3 client for a site's store, with keys from its credentials file."""
    keys = load_credentials(store.credentials_file) if store.credentials_file else {}
    made = session(  # botocore's data read once per process (failover.awssession says why)
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
    return made.client("s3", endpoint_url=store.endpoint_url, config=config)


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


class Bucket:
    """A site's bucket at its endpoint, with a client for it."""

    def __init__(self, store: ObjectStoreConfig, connections: int = 10) -> None:
        self.store = store
        self.name = store.bucket
        self.client = s3_client(store, max_connections=connections)
        self.endpoint = self.client.meta.endpoint_url

    def __str__(self) -> str:
        return f"{self.endpoint}/{self.name}"

    def list(self) -> dict[str, ObjectInfo]:
        """Every object in the bucket by key (ListObjectsV2, page by page).

        A failure is one sentence (ProviderError; ConfigError without keys).
        """
        with _calling(self.client, self.name, "list the objects of",
                      self.store.credentials_file):
            return _list(self.client, self.name)

    def recorded_source_etag(self, key: str) -> str | None:
        """The ETag this object was copied from, if failover copied it (None on any error)."""
        try:
            head = self.client.head_object(Bucket=self.name, Key=key)
        except S3_ERRORS:
            return None  # unknown counts as different: at worst one copy too many
        return head.get("Metadata", {}).get(SOURCE_ETAG_KEY)


def copy_object(source: Bucket, target: Bucket, key: str) -> ObjectInfo:
    """Stream one object from source to target with its headers; returns what was read."""
    got = source.client.get_object(Bucket=source.name, Key=key)
    body = got["Body"]
    etag = _etag(got["ETag"])  # of what was read, not of the listing: it may have changed since
    try:
        extra: dict[str, Any] = {
            "ContentType": got.get("ContentType", "binary/octet-stream"),
            "Metadata": {**got.get("Metadata", {}), SOURCE_ETAG_KEY: etag},
        }
        for name in ("CacheControl", "ContentDisposition", "ContentEncoding",
                     "ContentLanguage"):
            if got.get(name):
                extra[name] = got[name]
        target.client.upload_fileobj(body, target.name, key, ExtraArgs=extra,
                                     Config=_TRANSFER)
    finally:
        body.close()
    return ObjectInfo(key, got["ContentLength"], etag)


def _unwrap(exc: BaseException) -> BaseException:
    # boto3 wraps some upload errors (S3UploadFailedError); the cause says more.
    cause = exc.__cause__ or exc.__context__
    return cause if isinstance(exc, Boto3Error) and cause is not None else exc


def copy_failure(exc: BaseException) -> str:
    """Why one object was not copied, in a few words."""
    exc = _unwrap(exc)
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        if code in _NOT_FOUND_CODES and exc.operation_name == "GetObject":
            return "gone from the source since it was listed"
        return f"{exc.operation_name}: {code}: {error.get('Message', '')}".rstrip(": ")
    return str(exc) or type(exc).__name__


def unreachable(exc: BaseException) -> bool:
    """Whether an error says the endpoint cannot be reached at all (not one object's fault)."""
    return isinstance(_unwrap(exc), (botocore.exceptions.EndpointConnectionError,
                                     botocore.exceptions.ConnectTimeoutError))
