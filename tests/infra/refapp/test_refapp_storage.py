"""MediaStore against moto's in-process S3 mock."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from infra.refapp.errors import StorageUnavailable
from infra.refapp.storage import MediaStore

BUCKET = "refapp-test"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[MediaStore]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield MediaStore(None, BUCKET, "aws", client=client)


def test_put_get_delete(store: MediaStore) -> None:
    etag = store.put("media/one", b"\x89PNG data", "image/png")
    assert etag and '"' not in etag
    stored = store.get("media/one")
    assert stored is not None
    assert (stored.data, stored.content_type, stored.etag) == (b"\x89PNG data", "image/png", etag)
    store.delete_quietly("media/one")
    assert store.get("media/one") is None


def test_missing_object_is_none(store: MediaStore) -> None:
    assert store.get("media/none") is None


def test_missing_bucket_is_unavailable(store: MediaStore) -> None:
    other = MediaStore(None, "no-such-bucket", "aws", client=store._client)
    with pytest.raises(StorageUnavailable) as info:
        other.put("media/x", b"x", "text/plain")
    assert info.value.status_code == 503
    assert info.value.body() == {
        "error": "object storage unavailable: bucket 'no-such-bucket' does not exist",
        "site": "aws",
    }


def test_unreachable_endpoint_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Port 1 on a loopback address: refused at once, no network needed.
    store = MediaStore("http://127.0.99.254:1", BUCKET, "aws")
    with pytest.raises(StorageUnavailable) as info:
        store.get("media/x")
    assert info.value.message.startswith("object storage unavailable: ")
