"""The workload's log and spec: write-unavailability is measured from what the users saw.

And each request's event names the site that answered, as the app said.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest

from failover.drill.resolver import Answer, CachingResolver
from failover.drill.workload import (
    SITE_HEADER,
    Event,
    Workload,
    WorkloadLog,
    WorkloadSpec,
    _User,
)
from infra.refapp.api import SITE_HEADER as REFAPP_SITE_HEADER

A, B = "127.0.0.10", "127.0.0.20"


def ack(at: float, kind: str = "post", address: str = A) -> Event:
    return Event(at, kind, True, None, address, 0.01, id=f"{kind}-{at}")


def fail(at: float, kind: str = "post", cause: str = "connect", address: str | None = A) -> Event:
    return Event(at, kind, False, cause, address, 0.01, detail="refused")


def read(at: float, ok: bool, kind: str = "read") -> Event:
    return Event(at, kind, ok, None if ok else "4xx", A, 0.01)


def log_of(acks: list[float], failures: list[float]) -> WorkloadLog:
    return WorkloadLog([ack(at) for at in acks] + [fail(at) for at in failures])


def test_no_failures_no_windows() -> None:
    log = log_of([1, 2, 3], [])
    assert log.unavailable_windows() == [] and log.longest_unavailable() == 0.0


def test_an_empty_log_has_no_windows() -> None:
    assert WorkloadLog().unavailable_windows() == [] and WorkloadLog().longest_unavailable() == 0


def test_a_window_runs_from_the_last_ack_to_the_next() -> None:
    log = log_of([1, 2, 5, 6], [3, 4])
    assert log.unavailable_windows() == [(2, 5)]
    assert log.longest_unavailable() == 3


def test_an_outage_that_never_ends_still_counts() -> None:
    log = log_of([1], [2, 30])
    assert log.unavailable_windows() == [(1, 30)]
    assert log.unavailable_windows(until=40) == [(1, 40)]


def test_failures_before_the_first_ack_start_at_the_first_failure() -> None:
    assert log_of([5, 6], [2, 3]).unavailable_windows() == [(2, 5)]


def test_separate_outages_are_separate_windows() -> None:
    log = log_of([1, 4, 8], [2, 3, 6])
    assert log.unavailable_windows() == [(1, 4), (4, 8)]


def test_events_logged_out_of_order_are_put_in_time_order() -> None:
    # Users' threads log concurrently, so appends need not be in time order.
    log = WorkloadLog([ack(5), fail(3), ack(1), fail(4)])
    assert [e.at for e in log.writes()] == [1, 3, 4, 5]
    assert log.unavailable_windows() == [(1, 5)]


def test_reads_neither_open_nor_close_a_window() -> None:
    log = WorkloadLog([ack(1), read(2, ok=False), read(3, ok=True, kind="timeline"),
                       fail(4), read(5, ok=True), ack(6), read(7, ok=False)])
    assert [e.at for e in log.writes()] == [1, 4, 6]
    assert log.unavailable_windows() == [(1, 6)]


def test_media_uploads_are_writes_too() -> None:
    log = WorkloadLog([ack(1, "media"), fail(2, "media"), ack(3, "post"), ack(4, "media")])
    assert log.unavailable_windows() == [(1, 3)]
    assert [e.id for e in log.acked_media()] == ["media-1", "media-4"]
    assert [e.id for e in log.acked_posts()] == ["post-3"]


def test_first_ack_at_an_address_after_a_moment() -> None:
    log = WorkloadLog([ack(1, address=A), fail(2, cause="read-only", address=A),
                       fail(3, cause="dns", address=None), read(3.5, ok=True),
                       ack(4, "media", address=B), ack(5, address=B), ack(6, address=A)])
    assert log.first_ack_at(B, after=0) == 4
    assert log.first_ack_at(B, after=4) == 4  # at or after
    assert log.first_ack_at(B, after=4.5) == 5
    assert log.first_ack_at(A, after=1.5) == 6
    assert log.first_ack_at(A, after=7) is None
    assert log.first_ack_at("127.0.0.99", after=0) is None


def test_failures_are_counted_by_cause_reads_included() -> None:
    log = WorkloadLog([ack(1), fail(2, cause="read-only"), fail(3, cause="read-only"),
                       fail(4, "media", cause="timeout"), read(5, ok=False), read(6, ok=True)])
    assert log.failures_by_cause() == {"4xx": 1, "read-only": 2, "timeout": 1}
    assert WorkloadLog().failures_by_cause() == {}


def test_a_snapshot_is_a_copy() -> None:
    log = log_of([1], [])
    snapshot = log.snapshot()
    log.append(ack(2))
    assert len(snapshot) == 1 and len(log.events) == 2


def test_the_default_spec_is_valid() -> None:
    spec = WorkloadSpec()
    assert spec.rate > 0 and spec.users >= 1


@pytest.mark.parametrize(("change", "words"), [
    ({"rate": 0}, "rate must be a positive"),
    ({"rate": float("inf")}, "rate must be a positive"),
    ({"users": 0}, "users must be a whole number of at least 1"),
    ({"users": 2.5}, "users must be a whole number"),
    ({"write_share": 1.5}, "write_share must be between 0 and 1"),
    ({"media_share": -0.1}, "media_share must be between 0 and 1"),
    ({"media_share": float("nan")}, "media_share must be between 0 and 1"),
    ({"media_bytes": 0}, "media_bytes must be a whole number of at least 1"),
    ({"timeout": 0}, "timeout must be a positive number of seconds"),
])
def test_a_bad_spec_is_refused_in_one_line(change: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words) as raised:
        WorkloadSpec(**change)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)


def test_every_problem_of_a_spec_is_named_at_once() -> None:
    with pytest.raises(ValueError) as raised:
        WorkloadSpec(rate=-1, users=0, write_share=2)
    message = str(raised.value)
    assert "rate" in message and "users" in message and "write_share" in message


def test_shares_at_the_bounds_are_allowed() -> None:
    WorkloadSpec(write_share=0.0, media_share=1.0)
    WorkloadSpec(write_share=1.0, media_share=0.0)


# -- which site answered -----------------------------------------------------------------------


class FixedResolver(CachingResolver):
    """A resolver whose servers always answer ``A`` (nothing is asked on the network)."""

    def __init__(self) -> None:
        super().__init__("app.lab.failover.test.", [("192.0.2.53", 53)])

    def _ask(self) -> Answer:
        return Answer((A,), self.clock() + 3600, "fixed")


def one_request(handler: Callable[[httpx.Request], httpx.Response]) -> Event:
    """The event the workload logs for one post answered by ``handler``."""
    workload = Workload(WorkloadSpec(), FixedResolver, port=8080, host_header="app")
    user = _User(0, FixedResolver(), httpx.Client(transport=httpx.MockTransport(handler)),
                 random.Random(1))
    with user.client:
        return workload._request(user, "post", "POST", "/v1/posts", json={"text": "hi"})


def test_the_site_that_answered_is_what_the_app_says() -> None:
    acked = one_request(lambda _: httpx.Response(201, json={"id": "p-1"},
                                                 headers={SITE_HEADER: "aws"}))
    assert (acked.ok, acked.id, acked.site, acked.address) == (True, "p-1", "aws", A)
    refused = one_request(lambda _: httpx.Response(503, text="read-only",
                                                   headers={SITE_HEADER: "hetzner"}))
    assert (refused.ok, refused.cause, refused.site) == (False, "read-only", "hetzner")
    silent = one_request(lambda _: httpx.Response(201, json={"id": "p-2"}))
    assert (silent.ok, silent.site) == (True, None)  # an app that does not say


def test_the_workload_reads_the_reference_apps_own_header() -> None:
    assert SITE_HEADER == REFAPP_SITE_HEADER
