"""``failover status``'s cluster lines when etcd does not answer (the lab tests show it serving)."""

from __future__ import annotations

from failover.cluster.config import ClusterConfig
from failover.cluster.status import cluster_status


def test_members_that_do_not_answer_are_named_and_no_one_can_lead() -> None:
    # Nothing listens on port 9 of these loopback addresses: refused at once.
    endpoints = ["http://127.0.0.1:9", "http://127.0.0.2:9"]
    config = ClusterConfig(endpoints=endpoints, ttl=10, loop_wait=2.0, retry_timeout=1.0)
    status, warnings = cluster_status(config)
    assert set(status["members"]) == set(endpoints)
    assert all(why and why.startswith("no answer") for why in status["members"].values())
    assert status["leader"] is None and status["lease_holder"] is None
    assert [w for w in warnings if w.startswith("etcd member")] == [
        f"etcd member {url} ({status['members'][url]}) does not serve" for url in endpoints]
    assert warnings[-1].startswith("etcd does not answer")
    assert "no controller can lead or act until it has a quorum again" in warnings[-1]
