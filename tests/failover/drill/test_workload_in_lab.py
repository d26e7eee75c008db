"""The workload against a real lab: what it logs as acknowledged is in the primary's database.

The lab is the session's (``lab``): nothing here moves its primary, and the
posts written are the workload's own.
Waits are on the workload's own log (acks, events), never on a wall clock; the
resolvers' clock is stepped forward instead of waiting out the TTL.
"""

from __future__ import annotations

import time

import pytest

from failover.data.postgres import PgEndpoint
from failover.drill.resolver import CachingResolver
from failover.drill.workload import (
    Workload,
    WorkloadSpec,
    missing_media,
    missing_posts,
)
from failover.exceptions import FailoverError
from tests.conftest import RunningLab, free_port

pytestmark = pytest.mark.lab


class SteppedClock:
    """A monotonic clock that jumps ahead on demand, so cached answers expire at once."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead


def workload(lab: RunningLab, spec: WorkloadSpec, *, port: int | None = None,
             clock: SteppedClock | None = None,
             resolvers: list[CachingResolver] | None = None) -> Workload:
    """A workload that finds the app through the lab's DNS, one resolver per user."""
    def new_resolver() -> CachingResolver:
        resolver = CachingResolver(
            lab.layout.app_name, [(lab.layout.dns_address, lab.layout.dns_port)], timeout=0.5,
            clock=clock or time.monotonic,
        )
        if resolvers is not None:
            resolvers.append(resolver)
        return resolver

    return Workload(spec, new_resolver, port=port or lab.layout.app_port,
                    host_header=lab.layout.app_name.rstrip("."), seed=7)


def primary(lab: RunningLab) -> str:
    """The site whose database is not in recovery."""
    for site in ("aws", "hetzner"):
        with lab.endpoint(site).connect() as conn:
            row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
        if row is not None and row[0]:
            return site
    raise AssertionError("no site answers as primary")


def social_db(lab: RunningLab, site: str) -> PgEndpoint:
    """The app's database at ``site``."""
    return lab.endpoint(site, dbname="social")


def test_a_short_run_posts_uploads_and_reads_and_loses_nothing(lab: RunningLab) -> None:
    site = primary(lab)
    spec = WorkloadSpec(rate=40, users=3, write_share=0.6, media_share=0.3, media_bytes=4096,
                        timeout=5.0)
    w = workload(lab, spec)
    w.start()
    try:
        w.wait_acks(30, timeout=30)
        w.wait_events(lambda e: e.kind == "media" and e.ok, 2, timeout=30, what="media acked")
        w.wait_events(lambda e: e.kind == "read" and e.ok, 2, timeout=30, what="posts read")
        w.wait_events(lambda e: e.kind == "timeline" and e.ok, 2, timeout=30,
                      what="timelines read")
    finally:
        log = w.stop()
    assert w.stop() is log  # idempotent

    events = log.snapshot()
    assert log.failures_by_cause() == {}, [e for e in events if not e.ok][:3]
    assert {e.address for e in events} == {lab.layout.address(site)}
    assert {e.site for e in events} == {site}  # the app names itself in every answer
    assert {e.user for e in events} == {0, 1, 2}
    posts, media = log.acked_posts(), log.acked_media()
    assert len(posts) >= 20 and len(media) >= 2
    assert all(e.id for e in posts + media)
    assert all(e.seconds > 0 for e in events)
    post_ids, media_ids = [e.id for e in posts if e.id], [e.id for e in media if e.id]
    assert missing_posts(social_db(lab, site), post_ids) == []
    assert missing_media(social_db(lab, site), media_ids) == []
    # Each acknowledged upload was followed by a post that uses it.
    with social_db(lab, site).connect() as conn:
        used = {r[0] for r in conn.execute(
            "SELECT media_id::text FROM posts WHERE id = ANY(%s::uuid[]) AND media_id IS NOT NULL",
            (post_ids,))}
    assert used == set(media_ids)
    assert log.unavailable_windows() == [] and log.longest_unavailable() == 0.0


def test_missing_ids_are_named(lab: RunningLab) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert missing_posts(social_db(lab, primary(lab)), [unknown]) == [unknown]
    assert missing_media(social_db(lab, primary(lab)), [unknown]) == [unknown]


def test_requests_while_dns_is_down_are_logged_as_dns_failures(lab: RunningLab) -> None:
    clock = SteppedClock()
    resolvers: list[CachingResolver] = []
    w = workload(lab, WorkloadSpec(rate=30, users=2, write_share=0.5, media_share=0.5,
                                   media_bytes=512),
                 clock=clock, resolvers=resolvers)
    w.start()
    try:
        w.wait_acks(3, timeout=30)
        dead = free_port()
        for resolver in resolvers:  # the authoritative server is gone ...
            resolver.servers = ((lab.layout.dns_address, dead),)
        clock.ahead = 3600.0  # ... and every cached answer has expired
        w.wait_events(lambda e: e.cause == "dns" and e.is_write, 3, timeout=30,
                      what="writes failed at DNS")
        w.wait_events(lambda e: e.cause == "dns" and not e.is_write, 1, timeout=30,
                      what="reads failed at DNS")
    finally:
        log = w.stop()
    end = time.time()
    events = log.snapshot()
    for user in (0, 1):
        # A user's requests are sequential: from its first DNS failure on, all fail there.
        mine = [e for e in events if e.user == user]
        first = next(i for i, e in enumerate(mine) if e.cause == "dns")
        assert all(not e.ok and e.cause == "dns" for e in mine[first:]), mine[first:][:3]
        assert all(e.address is None and f":{dead}" in e.detail for e in mine[first:])
    assert log.failures_by_cause().keys() == {"dns"}
    assert log.unavailable_windows(until=end)[-1][1] == end  # the outage never ended
    assert log.longest_unavailable() > 0


def test_an_app_that_cannot_be_reached_at_start_is_a_clear_error(lab: RunningLab) -> None:
    port = free_port()
    w = workload(lab, WorkloadSpec(users=1), port=port)
    with pytest.raises(FailoverError) as raised:
        w.start()
    message = str(raised.value)
    assert f"http://{lab.layout.address(primary(lab))}:{port}/v1/users" in message
    assert "ConnectError" in message
    assert w.stop().events == []
