"""One controller of several: only the leader decides and acts, and a deposed one lets go.

The controller is the real one over a hand-built deployment (see
test_controller.py); its leadership is either a stand-in the test flips, or
the real ``Elected`` over the in-memory etcd double, with time moved by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from failover.cluster.config import ClusterConfig
from failover.cluster.election import Election
from failover.engine.deployment import Deployment
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan
from failover.exceptions import StaleToken
from failover.watch.controller import Controller
from failover.watch.leadership import Elected
from failover.watch.policy import Decision
from tests.failover.cluster.etcd_double import Clock, EtcdDouble
from tests.failover.handbuilt import HandBuiltDeployment, JournalingExecutor
from tests.failover.watch.test_controller import NOW, healthy, move, notice


class Flipped:
    """A leadership the test sets: who leads, and this controller's token."""

    alone = False
    name = "hetzner"

    def __init__(self) -> None:
        self.leading = False
        self.token: int | None = None
        self.changed: Callable[[], None] = lambda: None

    def leader(self) -> str | None:
        return self.name if self.leading else "aws"

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    def resign(self) -> None:
        self.leading = False

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "leading": self.leading, "token": self.token}


class Deposing(JournalingExecutor):
    """An executor whose run is refused, as the journal refuses a deposed leader's write."""

    def __call__(self, deployment: Deployment, plan: Plan, **kw: Any) -> RunRecord:
        self.plans.append(plan)
        raise StaleToken(7, 9, "the run journal")


def _controller(deployment: Deployment, executor: JournalingExecutor,
                leadership: Flipped) -> Controller:
    controller = Controller(deployment, clock=lambda: NOW, executor=executor,
                            leadership=leadership)
    controller.primary = "aws"
    return healthy(controller)


def _cycle(controller: Controller) -> Decision:
    """One cycle as the loop runs it, and the run it began, to its end."""
    async def go() -> Decision:
        decision = controller.cycle()
        if controller._worker is not None:
            await controller._worker
        return decision
    return asyncio.run(go())


@pytest.fixture
def deployment(tmp_path: Any) -> HandBuiltDeployment:
    return HandBuiltDeployment(tmp_path)


def test_a_follower_keeps_a_notice_but_decides_and_runs_nothing(
        deployment: HandBuiltDeployment) -> None:
    executor, leadership = JournalingExecutor(), Flipped()
    controller = _controller(deployment, executor, leadership)
    assert controller.deliver(notice(in_seconds=60))  # a signal may reach any controller
    decision = _cycle(controller)
    assert decision.action == "none"
    assert decision.sentence == "hetzner follows aws: the leader decides and acts"
    assert executor.plans == [] and controller.store.decisions() == []
    assert [n.provider for n in controller.store.notices()] == ["aws"]


def test_the_leader_acts_on_the_notice_a_follower_kept_and_its_requests_carry_its_token(
        deployment: HandBuiltDeployment) -> None:
    executor, leadership = JournalingExecutor(), Flipped()
    controller = _controller(deployment, executor, leadership)
    controller.deliver(notice(in_seconds=60))
    leadership.leading, leadership.token = True, 9
    decision = _cycle(controller)
    assert decision.action in ("prepare", "start")
    assert [d["action"] for d in controller.store.decisions()] == [decision.action]
    assert [p.to_site for p in executor.plans] == ["hetzner"]
    assert deployment.fencing_token() == 9


def test_a_run_refused_for_a_stale_token_leaves_the_move_to_the_new_leader(
        deployment: HandBuiltDeployment) -> None:
    executor, leadership = Deposing(), Flipped()
    leadership.leading, leadership.token = True, 7
    controller = _controller(deployment, executor, leadership)
    started = move("started")
    controller.store.save_move(started)
    asyncio.run(_act_and_wait(controller, Decision("start", "go", started)))
    assert len(executor.plans) == 1
    # Not put back to "scheduled", not tied to a run: the new leader owns the move.
    assert controller.store.move("m1") == started
    assert controller._running is None


async def _act_and_wait(controller: Controller, decision: Decision) -> None:
    controller._act(decision)
    assert controller._worker is not None
    await controller._worker


def test_a_deposed_leader_keeps_sending_its_old_token_so_that_it_is_refused() -> None:
    clock = Clock()
    etcd = EtcdDouble(clock)
    config = ClusterConfig(endpoints=["http://127.0.0.1:2379"], ttl=10, loop_wait=2.0,
                           retry_timeout=4.0)
    aws, hetzner = Elected(config, "aws"), Elected(config, "hetzner")
    for elected in (aws, hetzner):
        elected.election = Election(etcd.link(), elected.name, 10, 2.0, 4.0, clock=clock)
    changes: list[str] = []
    aws.changed = lambda: changes.append("aws")
    aws.cycle()
    hetzner.cycle()
    old = aws.token
    assert aws.leading and old is not None and changes == ["aws"]
    assert hetzner.token is None and hetzner.leader() == "aws"
    clock.advance(11)  # aws's site went dark: its key expires, hetzner takes it
    hetzner.cycle()
    assert hetzner.leading and hetzner.token is not None and hetzner.token > old
    # aws is no longer sure it leads, but a request of its run still carries its token
    # (not none, which an agent would take as a lone controller's).
    assert not aws.leading and aws.token == old
    aws.cycle()
    assert changes == ["aws", "aws"] and aws.leader() == "hetzner" and aws.token == old


def test_a_deposed_leader_leaves_the_moves_to_the_leader(
        deployment: HandBuiltDeployment) -> None:
    executor, leadership = JournalingExecutor(), Flipped()
    controller = _controller(deployment, executor, leadership)
    started = move("started")
    controller.store.save_move(started)
    # Its run found the lock held (the new leader runs the move): not put back, not tied.
    controller._put_back(started)
    assert controller.store.move("m1") == started
    leadership.leading = True
    controller._put_back(started)
    assert controller.store.move("m1") == move("scheduled")
