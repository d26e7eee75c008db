"""What the replicator copies, when it lists, how it keeps lag, over buckets held in memory.

``FakeS3`` stands for the S3 endpoints (no server): ``Bucket`` and
``copy_object`` are replaced by fakes over its dicts, so these tests decide
which endpoint refuses, which hangs and which object fails. The same
behaviour against real moto servers is in test_replicate_in_lab.py.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import botocore.exceptions
import pytest

from failover.data import replicate
from failover.data.objects import ObjectInfo
from failover.data.replicate import Replicator, TargetStatus
from failover.exceptions import ProviderError
from failover.stores import ObjectStoreConfig
from failover.waiting import wait_for


@dataclass
class FakeS3:
    """Buckets by name as dicts of bodies, with the faults a test sets on them."""

    buckets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    listings: Counter[str] = field(default_factory=Counter)  # full listings, by bucket
    copies_to: Counter[str] = field(default_factory=Counter)  # copies attempted, by target
    down: dict[str, Exception] = field(default_factory=dict)  # what copies there raise
    held: dict[str, threading.Event] = field(default_factory=dict)  # copies wait for the event
    refused: set[str] = field(default_factory=set)  # keys whose GET is refused

    def store(self, name: str, **objects: bytes) -> ObjectStoreConfig:
        """A bucket with these objects, and the config that names it."""
        self.buckets[name] = dict(objects)
        return ObjectStoreConfig(endpoint_url=f"http://{name}.test", bucket=name, timeout=1)

    def check(self, name: str) -> None:
        """Raise what botocore raises when the bucket's endpoint is down."""
        if name in self.down:
            raise self.down[name]


class FakeBucket:
    """Stands for objects.Bucket over a FakeS3."""

    def __init__(self, s3: FakeS3, store: ObjectStoreConfig) -> None:
        self.s3, self.name = s3, store.bucket

    def list(self) -> dict[str, ObjectInfo]:
        """The bucket's objects; a ProviderError, as Bucket.list raises, when it is down."""
        self.s3.listings[self.name] += 1
        if self.name in self.s3.down:
            raise ProviderError(f"cannot connect to http://{self.name}.test",
                                provider="s3", code="UNREACHABLE")
        return {k: ObjectInfo(k, len(v), "etag") for k, v in self.s3.buckets[self.name].items()}


def fake_copy(source: FakeBucket, target: FakeBucket, key: str) -> ObjectInfo:
    """Stands for objects.copy_object: raises botocore's errors as the real one would."""
    s3 = source.s3
    s3.copies_to[target.name] += 1
    if target.name in s3.held:
        s3.held[target.name].wait(timeout=10)
    s3.check(source.name)
    if key in s3.refused:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")
    s3.check(target.name)
    body = s3.buckets[source.name][key]
    s3.buckets[target.name][key] = body
    return ObjectInfo(key, len(body), "etag")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> FakeS3:
    """The fake endpoints, with the replicator's Bucket and copy_object pointed at them."""
    fake = FakeS3()
    monkeypatch.setattr(replicate, "Bucket", lambda store, connections=10: FakeBucket(fake, store))
    monkeypatch.setattr(replicate, "copy_object", fake_copy)
    return fake


def refused(name: str) -> Exception:
    """What botocore raises when an endpoint refuses connections."""
    return botocore.exceptions.EndpointConnectionError(endpoint_url=f"http://{name}.test")


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """The replicator's injected wall clock."""
    return Clock()


@pytest.fixture
def make(s3: FakeS3, clock: Clock) -> Iterator[Callable[..., Replicator]]:
    """Replicators from ``source`` to ``b`` and ``c`` on the clock, closed at the end."""
    made: list[Replicator] = []

    def make_one(**options: float) -> Replicator:
        targets = {name: s3.store(name) if name not in s3.buckets else config(name)
                   for name in ("b", "c")}
        made.append(Replicator(config("source"), targets, workers=2, clock=clock, **options))
        return made[-1]

    yield make_one
    for replicator in made:
        replicator.close()


def config(name: str) -> ObjectStoreConfig:
    """The config of an existing fake bucket."""
    return ObjectStoreConfig(endpoint_url=f"http://{name}.test", bucket=name, timeout=1)


def holds(s3: FakeS3, bucket: str, key: str) -> Callable[[], bool]:
    """Whether the bucket holds the key now."""
    return lambda: key in s3.buckets[bucket]


def test_only_missing_objects_are_copied(s3: FakeS3, make: Callable[..., Replicator]) -> None:
    s3.store("source", a=b"new a", b=b"bb", c=b"ccc")
    s3.store("b", a=b"older a, kept")
    replicator = make()

    replicator.run_pass()

    assert s3.buckets["b"] == {"a": b"older a, kept", "b": b"bb", "c": b"ccc"}
    assert s3.buckets["c"] == {"a": b"new a", "b": b"bb", "c": b"ccc"}
    status = replicator.status()
    assert (status["b"].copied, status["b"].copied_bytes, status["b"].pending) == (2, 5, 0)
    assert (status["c"].copied, status["c"].copied_bytes, status["c"].pending) == (3, 10, 0)
    replicator.run_pass()  # nothing missing: nothing copied again
    assert sum(s3.copies_to.values()) == 5


def test_lag_is_time_since_the_last_pass_that_left_nothing_missing(
        s3: FakeS3, clock: Clock, make: Callable[..., Replicator]) -> None:
    s3.store("source", a=b"a")
    replicator = make()
    assert replicator.status()["b"] == TargetStatus(
        active=True, lag_seconds=None, copied=0, copied_bytes=0, pending=None, error=None,
        last_pass_at=None)

    replicator.run_pass()  # T0 = 1000: all there
    clock.now = 1005
    assert replicator.status()["b"].lag_seconds == 5

    s3.buckets["source"].update(secret=b"s", public=b"p")
    s3.refused.add("secret")
    clock.now = 1010
    replicator.run_pass()  # T0 = 1010: "secret" fails, so the watermark stays at 1000
    clock.now = 1012
    assert s3.buckets["b"]["public"] == b"p"  # one object's failure stops no other
    status = replicator.status()["b"]
    assert (status.lag_seconds, status.pending, status.last_pass_at) == (12, 1, 1010)
    assert status.error == "1 not copied, first secret: GetObject: AccessDenied: Access Denied"

    s3.refused.clear()
    clock.now = 1020
    replicator.run_pass()
    clock.now = 1021
    status = replicator.status()["b"]
    assert (status.lag_seconds, status.pending, status.error) == (1, 0, None)


def test_targets_are_listed_at_first_then_every_relist_every(
        s3: FakeS3, clock: Clock, make: Callable[..., Replicator]) -> None:
    s3.store("source", a=b"a", b=b"b")
    replicator = make(relist_every=60)

    replicator.run_pass()
    del s3.buckets["b"]["a"]  # behind the replicator's back
    for now in (1010, 1030, 1059):
        clock.now = now
        replicator.run_pass()
    # The known keys stood for the targets: only the source was listed again.
    assert s3.listings == {"source": 4, "b": 1, "c": 1}
    assert "a" not in s3.buckets["b"]
    assert replicator.status()["b"].pending == 0  # as far as the replicator knows

    clock.now = 1060
    replicator.run_pass()
    assert s3.listings == {"source": 5, "b": 2, "c": 2}
    assert s3.buckets["b"]["a"] == b"a"


def test_a_target_that_cannot_be_listed_gets_no_new_watermark(
        s3: FakeS3, clock: Clock, make: Callable[..., Replicator]) -> None:
    s3.store("source", a=b"a")
    replicator = make(relist_every=60)
    replicator.run_pass()  # T0 = 1000
    s3.down["c"] = refused("c")
    clock.now = 1060
    replicator.run_pass()  # its listing is due and fails: its old one holds "a", proving nothing
    status = replicator.status()
    assert (status["c"].lag_seconds, status["c"].pending) == (60, 0)
    assert status["c"].error == "cannot connect to http://c.test"
    assert (status["b"].lag_seconds, status["b"].error) == (0, None)


@pytest.mark.parametrize(("fault", "message"), [
    (botocore.exceptions.EndpointConnectionError,  # down: connections refused
     'Could not connect to the endpoint URL: "http://c.test"'),
    (botocore.exceptions.ReadTimeoutError,  # frozen: connections accepted, never answered
     'Read timeout on endpoint URL: "http://c.test"'),
])
def test_a_dark_target_is_given_up_for_the_pass_and_the_other_catches_up(
        s3: FakeS3, clock: Clock, make: Callable[..., Replicator],
        fault: type[botocore.exceptions.BotoCoreError], message: str) -> None:
    s3.store("source")
    replicator = make()
    replicator.run_pass()  # T0 = 1000: both targets known and caught up
    s3.buckets["source"].update({f"k{i}": b"x" for i in range(20)})
    s3.down["c"] = fault(endpoint_url="http://c.test")

    clock.now = 1010
    replicator.run_pass()

    assert len(s3.buckets["b"]) == 20
    assert s3.copies_to["c"] <= 2  # the copies in flight (workers=2) when it was found down
    clock.now = 1015
    status = replicator.status()
    assert (status["b"].lag_seconds, status["b"].pending, status["b"].error) == (5, 0, None)
    assert (status["c"].lag_seconds, status["c"].pending) == (15, 20)
    assert status["c"].error == message

    clock.now = 1020
    replicator.run_pass()  # still down: it is listed afresh, and that fails
    assert s3.listings["c"] == 2
    assert replicator.status()["c"].error == "cannot connect to http://c.test"

    s3.down.clear()
    clock.now = 1030
    replicator.run_pass()
    assert len(s3.buckets["c"]) == 20
    assert replicator.status()["c"] == TargetStatus(
        active=True, lag_seconds=0, copied=20, copied_bytes=20, pending=0, error=None,
        last_pass_at=1030)


def test_the_loop_does_not_wait_for_a_hung_target(
        s3: FakeS3, make: Callable[..., Replicator]) -> None:
    s3.store("source")
    replicator = make()
    replicator.run_pass()
    s3.held["c"] = threading.Event()  # c's copies hang until it is set, as a frozen server's
    stop = threading.Event()
    thread = threading.Thread(target=replicator.loop, args=(stop, 0.01))
    thread.start()
    try:
        for key in ("k0", "k1", "k2", "k3", "k4"):
            s3.buckets["source"][key] = b"x"
            wait_for(holds(s3, "b", key), timeout=5, what=f"{key} at b", retry_on=())
        assert s3.buckets["c"] == {}
        assert s3.copies_to["c"] <= 2  # the first pass's copies, hung: no pass started since
        s3.held["c"].set()
        wait_for(lambda: len(s3.buckets["c"]) == 5 and replicator.status()["c"].pending == 0,
                 timeout=5, what="c to catch up", retry_on=())
    finally:
        s3.held["c"].set()
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_an_unreachable_source_is_an_error_for_every_target(
        s3: FakeS3, make: Callable[..., Replicator]) -> None:
    s3.store("source", a=b"a")
    s3.down["source"] = refused("source")
    replicator = make()
    replicator.run_pass()
    for status in replicator.status().values():
        assert status.error == "source: cannot connect to http://source.test"
        assert (status.lag_seconds, status.pending, status.last_pass_at) == (None, None, 1000)


def test_the_loop_outlives_errors_and_does_nothing_while_inactive(
        s3: FakeS3, make: Callable[..., Replicator], caplog: pytest.LogCaptureFixture) -> None:
    s3.store("source", a=b"a")
    replicator = make()
    replicator.run_pass()
    stop = threading.Event()
    answers: Iterator[bool | Exception] = iter([RuntimeError("lease unreadable"), False, False])

    def active() -> bool:
        answer = next(answers, None)
        if answer is None:
            stop.set()
            return False
        if isinstance(answer, Exception):
            raise answer
        return answer

    s3.buckets["source"]["late"] = b"late"
    replicator.loop(stop, interval=0, active=active)  # returns once ``stop`` is set

    assert "late" not in s3.buckets["b"]
    assert "event=objects.replicate.error where=loop" in caplog.text
    assert "RuntimeError: lease unreadable" in caplog.text  # with its traceback
    status = replicator.status()["b"]
    # Inactive: the watermark is forgotten, the counts are kept.
    assert (status.active, status.lag_seconds, status.copied, status.pending) == (
        False, None, 1, None)

    stop.clear()
    thread = threading.Thread(target=replicator.loop, args=(stop, 0.01))
    thread.start()
    try:
        wait_for(lambda: replicator.status()["b"].lag_seconds is not None, timeout=5,
                 what="b to be caught up again", retry_on=())
    finally:
        stop.set()
        thread.join(timeout=5)
    assert s3.buckets["b"]["late"] == b"late"
    assert replicator.status()["b"].active


def test_status_to_dict_is_json_ready(s3: FakeS3, clock: Clock,
                                      make: Callable[..., Replicator]) -> None:
    s3.store("source", a=b"abc")
    replicator = make()
    replicator.run_pass()
    clock.now = 1000.12345
    assert json.loads(json.dumps(replicator.status()["b"].to_dict())) == {
        "active": True, "lag_seconds": 0.123, "copied": 1, "copied_bytes": 3, "pending": 0,
        "error": None, "last_pass_at": 1000}


def test_a_slow_listing_spaces_the_passes() -> None:
    assert replicate.pause(1.0, 0.05) == 1.0  # a small bucket: the interval
    assert replicate.pause(1.0, 2.5) == 2.5 * replicate.IDLE_PER_LISTING


def test_bad_options_are_refused() -> None:
    store = config("source")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        Replicator(store, {}, workers=0)
    with pytest.raises(ValueError, match="relist_every must not be negative"):
        Replicator(store, {}, relist_every=-1)
