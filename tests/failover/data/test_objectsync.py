"""What a sync copies and what its verification finds, over listings held in memory."""

from __future__ import annotations

import json

import pytest

from failover.data.objects import ObjectInfo
from failover.data.objectsync import (
    FailedObject,
    SyncResult,
    VerifyResult,
    compare,
    copies_of_one_another,
    problems,
    sync_bucket,
    verify_listing,
)
from failover.stores import ObjectStoreConfig


def listing(*objects: ObjectInfo) -> dict[str, ObjectInfo]:
    """A bucket's listing by key."""
    return {o.key: o for o in objects}


def never_same(src: ObjectInfo, dst: ObjectInfo) -> bool:
    return False


def test_compare_sorts_objects_into_missing_differing_same_and_extra() -> None:
    asked: list[str] = []

    def same(src: ObjectInfo, dst: ObjectInfo) -> bool:
        asked.append(src.key)
        return src.key == "multipart"

    source = listing(ObjectInfo("equal", 3, "e1"), ObjectInfo("missing", 1, "m"),
                     ObjectInfo("resized", 4, "r1"), ObjectInfo("multipart", 9, "abc-2"),
                     ObjectInfo("rewritten", 5, "w1"))
    target = listing(ObjectInfo("equal", 3, "e1"), ObjectInfo("resized", 5, "r2"),
                     ObjectInfo("multipart", 9, "def"), ObjectInfo("rewritten", 5, "w2"),
                     ObjectInfo("only-here", 1, "x"))

    plan = compare(source, target, same)

    assert sorted(asked) == ["multipart", "rewritten"]  # only equal sizes, unequal ETags
    assert (plan.missing, plan.differing, plan.same, plan.extra) == (
        ("missing",), ("resized", "rewritten"), 2, 1)
    assert sorted(o.key for o in plan.to_copy) == ["missing", "resized", "rewritten"]


@pytest.mark.parametrize(("at_target", "at_source", "alike"), [
    ({"k": "src"}, {}, True),  # the target is our copy of the source
    ({}, {"k": "dst"}, True),  # failing back: the source is our copy of the target
    ({"k": "orig"}, {"k": "orig"}, True),  # both copies of one original
    ({"k": "other"}, {}, False),  # our copy, but of an older source object
    ({}, {}, False),  # nothing recorded (or the HEADs failed): copy again
])
def test_copies_of_one_another(
    at_target: dict[str, str], at_source: dict[str, str], alike: bool,
) -> None:
    src, dst = ObjectInfo("k", 9, "src"), ObjectInfo("k", 9, "dst")
    # Recorded source ETags by key, as each side's HEADs would answer.
    assert copies_of_one_another(src, dst, at_target.get, at_source.get) is alike


def test_verify_checks_the_target_against_the_snapshot_only() -> None:
    snapshot = listing(ObjectInfo("a", 1, "a1"), ObjectInfo("big", 20, "p-3"),
                       ObjectInfo("gone", 2, "g1"))
    # The target holds our multipart copy of big (its own ETag), and an object
    # the source took after the sync listed it is no business of this check.
    target = listing(ObjectInfo("a", 1, "a1"), ObjectInfo("big", 20, "q-2"),
                     ObjectInfo("later", 3, "l1"))
    at_target: dict[str, str] = {"big": "p-3"}
    at_source: dict[str, str] = {}

    def same(src: ObjectInfo, dst: ObjectInfo) -> bool:
        return copies_of_one_another(src, dst, at_target.get, at_source.get)

    result = verify_listing(snapshot, target, same)

    assert result == VerifyResult(missing=("gone",), differing=(), checked=3)
    assert not result.ok
    assert verify_listing(snapshot, listing(*snapshot.values()), never_same).ok


def _result(*failed: FailedObject) -> SyncResult:
    return SyncResult(copied=1, copied_bytes=10, unchanged=2, extra_at_target=0,
                      failed=failed, seconds=0.12345,
                      snapshot=listing(ObjectInfo("a", 1, "a1")))


def test_problems_name_a_failed_object_once_with_its_reason() -> None:
    result = _result(FailedObject("a", "GetObject: AccessDenied"),
                     FailedObject("b", "gone from the source since it was listed"))
    verified = VerifyResult(missing=("a", "c"), differing=("b", "d"), checked=4)

    assert problems(result, verified, "hetzner", only_missing=False) == [
        "a: GetObject: AccessDenied",
        "b: gone from the source since it was listed",
        "missing at hetzner: c",
        "differs at hetzner: d",
    ]
    # After a move the target's own, newer objects differ on purpose.
    assert problems(result, verified, "hetzner", only_missing=True)[-1] == (
        "missing at hetzner: c")
    assert problems(_result(), VerifyResult((), (), 1), "hetzner", only_missing=False) == []


def test_sync_result_is_json_ready_without_its_snapshot() -> None:
    data = _result(FailedObject("a", "not attempted: Could not connect")).to_dict()
    assert json.loads(json.dumps(data)) == {
        "copied": 1, "copied_bytes": 10, "unchanged": 2, "extra_at_target": 0,
        "failed": [{"key": "a", "reason": "not attempted: Could not connect"}],
        "seconds": 0.123,
    }
    assert str(FailedObject("a", "why")) == "a: why"
    assert "snapshot" not in repr(_result())


def test_a_sync_needs_a_worker() -> None:
    store = ObjectStoreConfig(endpoint_url="http://127.0.0.1:9", bucket="media")
    with pytest.raises(ValueError, match="at least 1"):
        sync_bucket(store, store, workers=0)
