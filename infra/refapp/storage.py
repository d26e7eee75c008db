"""Media objects in the site's S3 bucket (a moto server in the lab).

Credentials and region come from boto3's standard environment; only the endpoint and
bucket are settings. Transport and service failures become `StorageUnavailable` (503).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class StoredObject:
    """An object read back from the bucket."""

    data: bytes
    content_type: str
    etag: str


class MediaStore:
    """Puts, gets and deletes media objects in one bucket."""

    def __init__(
        self, endpoint: str | None, bucket: str, site: str, client: S3Client | None = None
    ) -> None:
        """Use ``client`` if given (tests), else create one for ``endpoint``."""
        self.bucket = bucket
        self.site = site
        self._client: S3Client = client or boto3.client(
            "s3",
            endpoint_url=endpoint,
            config=Config(
                # Fail within seconds when the site's storage is down, like the database.
                connect_timeout=3,
                read_timeout=10,
                retries={"max_attempts": 2, "mode": "standard"},
                # Path-style URLs: the endpoint is an IP address, not a wildcard DNS name.
                s3={"addressing_style": "path"},
            ),
        )

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key``; return the object's ETag without quotes."""
        try:
            response = self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from exc
        return response.get("ETag", "").strip('"')

    def get(self, key: str) -> StoredObject | None:
        """Return the object under ``key``, or None if the bucket has no such object."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            data = response["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_OBJECT_CODES:
                return None
            raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        return StoredObject(
            data=data,
            content_type=response.get("ContentType") or "application/octet-stream",
            etag=response.get("ETag", "").strip('"'),
        )

    def delete_quietly(self, key: str) -> None:
        """Delete ``key``, logging instead of raising on failure (used for clean-up)."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            logger.warning(
                "could not delete orphaned object %r from bucket %r: %s", key, self.bucket, exc
            )

    def _unavailable(self, exc: BotoCoreError | ClientError) -> StorageUnavailable:
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code == "NoSuchBucket":
                cause = f"bucket '{self.bucket}' does not exist"
            else:
                message = exc.response.get("Error", {}).get("Message", "")
                cause = f"{code}: {message}" if message else code
        else:
            cause = str(exc)
        return StorageUnavailable(self.site, cause)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))
