"""Our etcd wrapper against three real members: keys, leases, races, members lost."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from failover.cluster.exceptions import ClusterUnavailable, LeaseNotFound
from failover.waiting import wait_for
from tests.failover.cluster.conftest import Members

pytestmark = pytest.mark.lab

SHORT_TTL = 2  # etcd grants no lease under ~2 s with its default 1 s election timeout


def test_keys_round_trip_with_their_revisions(members: Members) -> None:
    cluster = members.cluster()
    before = cluster.revision()
    done = cluster.put("moves/1", '{"to": "hetzner"}')
    assert done > before and cluster.revision() == done
    entry = cluster.get("moves/1")
    assert entry is not None
    assert (entry.key, entry.value, entry.create_revision, entry.mod_revision, entry.lease) == (
        "moves/1", '{"to": "hetzner"}', done, done, 0)
    assert cluster.get("moves/none") is None

    swapped = cluster.swap("moves/1", "second", entry.mod_revision)
    assert swapped.succeeded and swapped.entry is not None
    assert swapped.entry.create_revision == done and swapped.entry.mod_revision > done
    late = cluster.swap("moves/1", "third", entry.mod_revision)  # on a stale revision
    assert not late.succeeded and late.entry == swapped.entry

    cluster.put("moves/2", "b")
    cluster.put("notices/1", "n")
    assert [e.key for e in cluster.range("moves/")] == ["moves/1", "moves/2"]
    assert [e.key for e in cluster.range()] == ["moves/1", "moves/2", "notices/1"]
    assert cluster.delete("moves/1") and not cluster.delete("moves/1")
    assert [e.key for e in cluster.range("moves/")] == ["moves/2"]
    # Another deployment's keys are out of sight.
    assert members.cluster().range() == []


def test_a_key_on_a_lease_goes_when_the_lease_lapses_and_not_while_renewed(
    members: Members,
) -> None:
    cluster = members.cluster()
    lease = cluster.grant(SHORT_TTL)
    assert 0 < cluster.ttl(lease) <= SHORT_TTL
    cluster.put("leased", "x", lease=lease)
    assert cluster.get("leased") == cluster.get("leased") and cluster.get("leased") is not None
    entry = cluster.get("leased")
    assert entry is not None and entry.lease == lease

    # Renewed every half second, it outlives two TTLs.
    until = time.monotonic() + 2 * SHORT_TTL

    def renewed_past_two_ttls() -> bool:
        assert cluster.refresh(lease) >= SHORT_TTL
        assert cluster.get("leased") is not None
        return time.monotonic() >= until

    wait_for(renewed_past_two_ttls, timeout=3 * SHORT_TTL, what="two TTLs of renewals",
             retry_on=(), interval=0.5)
    started = time.monotonic()
    left: list[int] = []  # asked throughout: its last second too, when etcd says TTL 0

    def gone() -> bool:
        left.append(cluster.ttl(lease))
        return cluster.get("leased") is None

    wait_for(gone, timeout=SHORT_TTL + 5, what="the key to go with its lease", retry_on=(),
             interval=0.1)
    assert left == sorted(left, reverse=True) and left[-1] == 0, left
    assert time.monotonic() - started > SHORT_TTL - 1  # it lapsed, not vanished
    assert cluster.refresh(lease) == 0 and cluster.ttl(lease) == 0
    with pytest.raises(LeaseNotFound, match="etcd has no such lease for put again"):
        cluster.put("again", "y", lease=lease)
    cluster.revoke(lease)  # gone already: no error

    other = cluster.grant(30)
    cluster.put("revoked", "z", lease=other)
    cluster.revoke(other)
    assert cluster.get("revoked") is None


def test_of_many_that_create_one_key_at_once_exactly_one_wins(members: Members) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"  # one deployment: one prefix for all of them
    clients = [members.cluster(first=site, name=name) for site in members.layout.sites
               for _ in range(2)]
    start = threading.Barrier(len(clients))
    outcomes = {}

    def contend(i: int) -> None:
        start.wait()
        outcomes[i] = clients[i].create("leader", f"contender-{i}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == len(clients)
    winners = [i for i, outcome in outcomes.items() if outcome.succeeded]
    assert len(winners) == 1, outcomes
    held = clients[0].get("leader")
    assert held is not None and held.value == f"contender-{winners[0]}"
    assert {outcome.entry for outcome in outcomes.values()} == {held}


def test_with_one_member_lost_every_call_still_works(members: Members) -> None:
    cluster = members.cluster(retry_timeout=3.0, first="aws")  # the lost one asked first
    members.kill("aws")
    try:
        # When aws's member led, the others elect a new leader first (a second or two, more
        # on a busy machine); writes wait for it, reads too (they are linearizable).
        wait_for(cluster.revision, timeout=15, what="the survivors to serve",
                 retry_on=ClusterUnavailable)
        lease = cluster.grant(SHORT_TTL)
        assert cluster.create("leader", "hetzner", lease).succeeded
        entry = cluster.get("leader")
        assert entry is not None and entry.value == "hetzner"
        assert cluster.refresh(lease) >= SHORT_TTL
        assert cluster.revision() >= entry.mod_revision
        cluster.revoke(lease)
        assert cluster.get("leader") is None
    finally:
        members.start("aws")
    # Back over its data, the member serves what was written while it was away.
    back = members.cluster(retry_timeout=3.0, first="aws")
    assert back.revision() >= entry.mod_revision


def test_with_every_member_lost_a_call_fails_in_one_line_naming_each(members: Members) -> None:
    cluster = members.cluster(retry_timeout=3.0)
    cluster.put("before", "x")
    members.kill(*members.layout.sites)
    try:
        with pytest.raises(ClusterUnavailable) as info:
            cluster.get("before")
        message = str(info.value)
        tried = ", ".join(f"{url} (connection refused)" for url in cluster.endpoints)
        assert message == (f"etcd did not answer get before in 3s: tried {tried}; check that "
                           "most of its members run and that watch.cluster.endpoints names them")
        assert "\n" not in message
    finally:
        members.start(*members.layout.sites)
    entry = cluster.get("before")  # nothing written is lost
    assert entry is not None and entry.value == "x", members.log_tails()
