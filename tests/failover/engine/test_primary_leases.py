"""Which lease a move waits on (the controller's lease book, or the agents' in etcd), and how.

No etcd runs here: choosing sends no request, and the step's wait is played
against a double of the seam (etcd's side of it is tested in
tests/failover/cluster/test_primarylease.py and in the lab).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from failover.cluster.primarylease import EtcdLeases
from failover.engine.plan import Plan, Step
from failover.engine.steps import ACTIONS, StepContext
from failover.lease import LeaseBook
from tests.failover.engine.conftest import config_data
from tests.failover.handbuilt import FakeDeployment

CLUSTER = {"endpoints": ["http://10.0.0.5:2379"], "ttl": 10, "loop_wait": 2,
           "retry_timeout": 2}


@pytest.mark.parametrize(("watch", "kind"), [
    ({}, LeaseBook),  # a lone controller
    ({"cluster": CLUSTER}, LeaseBook),  # elected controllers; the controller still renews it
    ({"cluster": {**CLUSTER, "agent_leases": True}}, EtcdLeases),
])
def test_a_move_waits_on_the_lease_where_it_is_kept(
    tmp_path: Path, watch: dict[str, object], kind: type
) -> None:
    deployment = FakeDeployment(tmp_path, {**config_data(), "watch": watch})
    assert isinstance(deployment.primary_leases, kind)
    if kind is LeaseBook:
        assert deployment.primary_leases is deployment.lease_book


class LeasesDouble:
    """The seam as a move sees it: the calls made, and a lease that lapses ``after`` looks."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls: list[str] = []

    def withhold(self, site: str) -> None:
        self.calls.append(f"withhold {site}")

    def lapsed_by(self, site: str) -> float | None:
        self.calls.append(f"lapsed_by {site}")
        looks = sum(call.startswith("lapsed_by") for call in self.calls)
        # Ahead by a little, as an agent's hold still there: asked again, not slept out.
        return time.time() + (0.02 if looks <= self.after else -1.0)

    def allow(self, site: str) -> None:
        self.calls.append(f"allow {site}")


def _await(deployment: FakeDeployment, fence: dict[str, Any]) -> dict[str, Any]:
    step = Step("await_lease", "wait", {"site": "aws"}, 30)
    plan = Plan("promote", "aws", "hetzner", (step,))
    ctx = StepContext(deployment, plan, 0, step, {"fence": fence}, time.monotonic() + 30,
                      lambda _said: None)
    return ACTIONS["await_lease"](ctx)


def test_a_promote_withholds_first_then_asks_until_the_lease_has_lapsed(
    deployment: FakeDeployment
) -> None:
    leases = LeasesDouble(after=3)
    deployment.__dict__["primary_leases"] = leases  # the cached seam, as the config chose it
    said = _await(deployment, {"fenced": False})
    assert leases.calls == ["withhold aws"] + ["lapsed_by aws"] * 4
    assert said["waited"] > 0 and said["lapsed_at"] < time.time()

    leases.calls.clear()
    assert _await(deployment, {"fenced": True}) == {"waited": 0.0, "why": "aws was fenced"}
    assert leases.calls == []  # fenced outright: nothing to wait for
