"""Bucket sync and verify between two real moto servers (two endpoints, as two sites are).

The servers are started once for the module and stopped by PID whatever
happens; each test works in buckets of its own.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from boto3.s3.transfer import TransferConfig

from failover.data.objects import SOURCE_ETAG_KEY, Bucket, s3_client
from failover.data.objectsync import FailedObject, SyncProgress, sync_bucket, verify_bucket
from failover.exceptions import ProviderError
from failover.processes import ProcessRecord, spawn, stop
from failover.secretfiles import write_private
from failover.stores import ObjectStoreConfig
from failover.waiting import wait_for
from tests.conftest import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.lab  # real moto servers, started by the module

MiB = 1024 * 1024
Stores = tuple[ObjectStoreConfig, ObjectStoreConfig]


def start_moto(name: str, log_dir: Path, env: dict[str, str] | None = None) -> tuple[
        ProcessRecord, str]:
    """A moto server on a free loopback port, answering HTTP; returns it and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    record = spawn(
        name, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log=log_dir / f"{name}.log", env={**os.environ, **env} if env else None,
    )
    try:
        wait_for(lambda: httpx.get(f"{url}/moto-api/", timeout=1.0).status_code < 500,
                 timeout=30, what=f"{name} to answer", retry_on=httpx.TransportError)
    except BaseException:
        stop(record)
        raise
    return record, url


@pytest.fixture(scope="module")
def moto_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs and the credentials file of the module's servers."""
    return tmp_path_factory.mktemp("moto")


@pytest.fixture(scope="module")
def credentials_file(moto_dir: Path) -> Path:
    """An AWS shared-credentials file; moto accepts any key."""
    path = moto_dir / "aws-credentials"
    write_private(path, "[default]\naws_access_key_id = testing\n"
                        "aws_secret_access_key = testing-secret\n")
    return path


@pytest.fixture(scope="module")
def endpoints(moto_dir: Path) -> Iterator[tuple[str, str]]:
    """Two moto servers, one per site, stopped by PID at the end."""
    records: list[ProcessRecord] = []
    try:
        urls = []
        for site in ("site-a", "site-b"):
            record, url = start_moto(f"moto@{site}", moto_dir)
            records.append(record)
            urls.append(url)
        yield urls[0], urls[1]
    finally:
        for record in records:
            stop(record)


def new_bucket(endpoint: str, credentials_file: Path) -> ObjectStoreConfig:
    """A fresh, empty bucket at the endpoint."""
    store = ObjectStoreConfig(endpoint_url=endpoint, bucket=f"b-{uuid.uuid4().hex[:12]}",
                              credentials_file=credentials_file)
    s3_client(store).create_bucket(Bucket=store.bucket)
    return store


@pytest.fixture
def stores(endpoints: tuple[str, str], credentials_file: Path) -> Stores:
    """A fresh source bucket at site A and a fresh target bucket at site B."""
    return new_bucket(endpoints[0], credentials_file), new_bucket(endpoints[1], credentials_file)


@functools.cache
def client(store: ObjectStoreConfig) -> S3Client:
    """One client per store for the tests' own calls (making a client takes ~0.2s)."""
    return s3_client(store)


def put(store: ObjectStoreConfig, key: str, body: bytes, **extra: Any) -> None:
    """One object written by a single PUT."""
    client(store).put_object(Bucket=store.bucket, Key=key, Body=body, **extra)


def put_multipart(store: ObjectStoreConfig, key: str, body: bytes) -> None:
    """One object uploaded in 5 MiB parts (moto's minimum but for the last)."""
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client(store).upload_fileobj(io.BytesIO(body), store.bucket, key, Config=config)


def body_of(store: ObjectStoreConfig, key: str) -> bytes:
    """An object's bytes."""
    return client(store).get_object(Bucket=store.bucket, Key=key)["Body"].read()


def etag_of(store: ObjectStoreConfig, key: str) -> str:
    """An object's ETag, unquoted."""
    return Bucket(store).list()[key].etag  # as a listing shows it, as a sync compares it


def small_objects(count: int) -> dict[str, bytes]:
    """Objects of assorted small sizes, some empty, some under "folders"."""
    return {f"media/{i // 50}/obj-{i:04d}.bin": os.urandom(i * 37 % 4000) for i in range(count)}


def test_first_sync_copies_everything_and_a_second_copies_nothing(stores: Stores) -> None:
    source, target = stores
    objects = small_objects(200)
    for key, body in objects.items():
        put(source, key, body)
    big = os.urandom(12 * MiB)  # a single PUT: a plain MD5 ETag at the source
    put(source, "video/big.mp4", big, ContentType="video/mp4",
        Metadata={"owner": "alice"}, CacheControl="max-age=60")
    put(source, "doc.txt", b"hello", ContentType="text/plain; charset=utf-8")

    first = sync_bucket(source, target)

    total_bytes = sum(map(len, objects.values())) + len(big) + 5
    assert (first.copied, first.copied_bytes, first.unchanged, first.extra_at_target,
            first.failed) == (202, total_bytes, 0, 0, ())
    assert body_of(target, "video/big.mp4") == big
    head = client(target).head_object(Bucket=target.bucket, Key="video/big.mp4")
    assert head["ContentType"] == "video/mp4"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"owner": "alice", SOURCE_ETAG_KEY: etag_of(source, "video/big.mp4")}
    # Written in 8 MiB parts at the target: another ETag for the same bytes.
    assert etag_of(target, "video/big.mp4").endswith("-2")
    doc = client(target).head_object(Bucket=target.bucket, Key="doc.txt")
    assert doc["ContentType"] == "text/plain; charset=utf-8"
    assert verify_bucket(source, target).ok

    second = sync_bucket(source, target)
    assert (second.copied, second.copied_bytes, second.unchanged, second.failed) == (
        0, 0, 202, ())


def test_changed_and_new_objects_are_copied_and_extras_kept(stores: Stores) -> None:
    source, target = stores
    for key, body in small_objects(10).items():
        put(source, key, body)
    sync_bucket(source, target)

    put(source, "media/0/obj-0003.bin", b"changed")
    put(source, "media/0/obj-0004.bin", os.urandom(len(body_of(source, "media/0/obj-0004.bin"))))
    put(source, "new.bin", b"new object")
    put(target, "only-at-target.bin", b"keep me")
    result = sync_bucket(source, target)

    assert (result.copied, result.copied_bytes, result.unchanged, result.extra_at_target) == (
        3, 7 + len(body_of(source, "media/0/obj-0004.bin")) + 10, 8, 1)
    assert body_of(target, "media/0/obj-0003.bin") == b"changed"
    assert body_of(target, "new.bin") == b"new object"
    assert body_of(target, "only-at-target.bin") == b"keep me"
    assert verify_bucket(source, target).ok
    assert result.to_dict()["extra_at_target"] == 1


def test_only_missing_leaves_the_targets_newer_objects_alone(stores: Stores) -> None:
    source, target = stores
    put(source, "avatar.png", b"old at the former primary")
    sync_bucket(source, target)
    put(target, "avatar.png", b"newer, written at the new primary")
    put(source, "late.bin", b"uploaded at the old site during the move")
    result = sync_bucket(source, target, only_missing=True)
    assert (result.copied, result.unchanged) == (1, 1)
    assert body_of(target, "avatar.png") == b"newer, written at the new primary"
    assert body_of(target, "late.bin") == b"uploaded at the old site during the move"


def test_multipart_object_is_copied_once(stores: Stores) -> None:
    source, target = stores
    body = os.urandom(12 * MiB + 123)
    put_multipart(source, "big.bin", body)
    source_etag = etag_of(source, "big.bin")
    assert source_etag.endswith("-3")

    first = sync_bucket(source, target)
    assert (first.copied, first.copied_bytes, first.failed) == (1, len(body), ())
    assert etag_of(target, "big.bin") != source_etag  # other part size at the target
    assert body_of(target, "big.bin") == body

    second = sync_bucket(source, target)
    assert (second.copied, second.unchanged) == (0, 1)
    assert verify_bucket(source, target).ok


def test_failing_back_does_not_copy_back_what_was_copied(
        stores: Stores, endpoints: tuple[str, str], credentials_file: Path) -> None:
    site_a, site_b = stores
    put_multipart(site_a, "big.bin", os.urandom(11 * MiB))
    sync_bucket(site_a, site_b)
    # After a fail-over, site B is the source: its copy's ETag differs from A's,
    # but its metadata says where it came from.
    back = sync_bucket(site_b, site_a)
    assert (back.copied, back.unchanged) == (0, 1)
    # Two copies of one original are the same too.
    site_c = new_bucket(endpoints[0], credentials_file)
    sync_bucket(site_a, site_c)
    assert verify_bucket(site_b, site_c).ok


def test_progress_reports_increasing_counts(stores: Stores) -> None:
    source, target = stores
    objects = small_objects(30)
    for key, body in objects.items():
        put(source, key, body)
    seen: list[SyncProgress] = []

    sync_bucket(source, target, workers=4, progress=seen.append)

    total = sum(map(len, objects.values()))
    assert seen[0] == SyncProgress(0, 30, 0, total)
    assert seen[-1] == SyncProgress(30, 30, total, total)
    assert [p.done for p in seen] == list(range(31))
    assert all(a.bytes_done <= b.bytes_done for a, b in itertools.pairwise(seen))


def test_verify_against_the_syncs_snapshot_ignores_what_came_later(stores: Stores) -> None:
    source, target = stores
    put(source, "before.bin", b"listed by the sync")
    put_multipart(source, "big.bin", os.urandom(11 * MiB))  # another ETag at the target
    result = sync_bucket(source, target)
    assert sorted(result.snapshot) == ["before.bin", "big.bin"]
    put(source, "after.bin", b"written once the sync had listed the source")

    assert verify_bucket(source, target, snapshot=result.snapshot).to_dict() == {
        "ok": True, "missing": [], "differing": [], "checked": 2}
    assert verify_bucket(source, target).missing == ("after.bin",)  # a fresh listing
    client(target).delete_object(Bucket=target.bucket, Key="before.bin")
    assert verify_bucket(source, target, snapshot=result.snapshot).missing == ("before.bin",)


def test_verify_reports_missing_and_differing(stores: Stores) -> None:
    source, target = stores
    for key in ("a", "b", "c", "d"):
        put(source, key, f"body of {key}".encode())
    sync_bucket(source, target)
    client(target).delete_object(Bucket=target.bucket, Key="a")
    put(target, "b", b"BODY OF b")  # same size, other bytes, no recorded source ETag
    put(target, "c", b"longer body of c")

    result = verify_bucket(source, target)

    assert (result.missing, result.differing, result.checked, result.ok) == (
        ("a",), ("b", "c"), 4, False)
    assert result.to_dict() == {"ok": False, "missing": ["a"], "differing": ["b", "c"],
                                "checked": 4}


def test_unreachable_endpoint_is_a_provider_error(
        stores: Stores, credentials_file: Path) -> None:
    source, _ = stores
    nowhere = ObjectStoreConfig(endpoint_url=f"http://127.0.0.1:{free_port()}",
                                bucket="media", credentials_file=credentials_file)
    with pytest.raises(ProviderError) as caught:
        sync_bucket(source, nowhere)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to {nowhere.endpoint_url} to list the objects "
                              "of bucket 'media'")
    assert "endpoint_url" in message
    assert caught.value.code == "UNREACHABLE"


@pytest.mark.parametrize("side", ["source", "target"])
def test_missing_bucket_is_a_provider_error(stores: Stores, side: str) -> None:
    source, target = stores
    absent = target.model_copy(update={"bucket": "no-such-bucket"})
    with pytest.raises(ProviderError) as caught:
        if side == "source":
            sync_bucket(absent, target)
        else:
            verify_bucket(source, absent)
    assert str(caught.value) == (
        f"bucket 'no-such-bucket' at {target.endpoint_url} does not exist; create it, "
        "or correct the site's objects.bucket or objects.endpoint_url")
    assert caught.value.code == "NoSuchBucket"


def test_refused_credentials_are_a_provider_error(
        moto_dir: Path, credentials_file: Path, stores: Stores) -> None:
    record, url = start_moto("moto@auth", moto_dir, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        guarded = ObjectStoreConfig(endpoint_url=url, bucket="media",
                                    credentials_file=credentials_file)
        with pytest.raises(ProviderError) as caught:
            sync_bucket(stores[0], guarded)
    finally:
        stop(record)
    assert str(caught.value) == (
        f"{url} refused to list the objects of bucket 'media' (InvalidAccessKeyId); "
        f"check the keys in {credentials_file} and their permissions on the bucket")
    assert "testing-secret" not in str(caught.value)


def test_source_lost_during_sync_stops_early(
        moto_dir: Path, endpoints: tuple[str, str], credentials_file: Path) -> None:
    record, url = start_moto("moto@dying", moto_dir)
    try:
        source = new_bucket(url, credentials_file)
        for key, body in small_objects(20).items():
            put(source, key, body)
        target = new_bucket(endpoints[1], credentials_file)

        def stop_source_after_first(p: SyncProgress) -> None:
            if p.done == 1:
                stop(record)

        result = sync_bucket(source, target, workers=1, progress=stop_source_after_first)
    finally:
        stop(record)
    assert result.copied >= 1
    assert result.copied + len(result.failed) == 20
    assert all(isinstance(f, FailedObject) for f in result.failed)
    reasons = [f.reason for f in result.failed]
    assert any(r.startswith("not attempted: Could not connect") for r in reasons), reasons
    assert result.to_dict()["failed"][0] == {"key": result.failed[0].key,
                                             "reason": result.failed[0].reason}


def test_to_dict_is_json_ready(stores: Stores) -> None:
    source, target = stores
    put(source, "x", b"x")
    data = sync_bucket(source, target).to_dict()
    assert {k: v for k, v in data.items() if k != "seconds"} == {
        "copied": 1, "copied_bytes": 1, "unchanged": 0, "extra_at_target": 0, "failed": []}
    assert isinstance(data["seconds"], float)

