"""The controller without a lab: notices in, decisions carried out, runs tied to moves.

The deployment is a real one (configuration, journal, store in a temp dir)
whose databases and apps answer from hand-built values, and the engine's
executor is one that journals each step as done without touching a host.
So ``deliver``, ``snapshot`` and ``_act`` run as they do in production, and
the assertions are on the store and the journal.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from failover.engine.deployment import Deployment, SiteView, Topology
from failover.engine.executor import run_lock
from failover.engine.plans import plan_switchover
from failover.exceptions import ConfigError
from failover.secretfiles import write_private
from failover.watch.controller import Controller
from failover.watch.policy import Decision, Move, run_cycle
from failover.watch.signals import Notice, NoticeRefused, Observation
from failover.watch.webhook import load_notify_secret
from tests.failover.handbuilt import STREAMING, HandBuiltDeployment, JournalingExecutor

NOW = 1_800_000_000.0
ALONE = Topology({"aws": SiteView("aws", "primary", "0/1"),
                  "hetzner": SiteView("hetzner", "standby", "0/1")})  # streams from nothing


@pytest.fixture
def deployment(tmp_path: Path) -> HandBuiltDeployment:
    return HandBuiltDeployment(tmp_path)


def controller_of(deployment: Deployment, executor: JournalingExecutor | None = None,
                  clock: Callable[[], float] = lambda: NOW) -> Controller:
    controller = Controller(deployment, clock=clock, executor=executor or JournalingExecutor())
    controller.primary = "aws"
    return controller


def act(controller: Controller, decision: Decision) -> None:
    """Carry a decision out as the loop does, and wait for the run it began."""
    async def go() -> None:
        controller._act(decision)
        if controller._worker is not None:
            await controller._worker
    asyncio.run(go())


def healthy(controller: Controller) -> Controller:
    """Probes have seen aws primary, hetzner streaming, both apps up from every vantage."""
    for vantage in controller.settings.vantages:
        for site, role in (("aws", "primary"), ("hetzner", "standby")):
            controller.hear(Observation("database", site, vantage, NOW, "up", 0.01,
                                        facts={"role": role}))
            for _ in range(controller.settings.failures):
                controller.hear(Observation("http", site, vantage, NOW, "up", 0.01))
    return controller


def decide(controller: Controller) -> Decision:
    """What the next cycle would decide over the controller's own snapshot (nothing is done)."""
    return run_cycle(controller.snapshot())


def move(state: str = "scheduled", kind: str = "switchover", **kw: Any) -> Move:
    return Move("m1", kind, "aws", "hetzner", "aws", "notice", NOW, NOW,  # type: ignore[arg-type]
                state, **kw)  # type: ignore[arg-type]


def notice(in_seconds: float = 3600.0, reference: str = "t-1", source: str = "webhook") -> Notice:
    return Notice("aws", NOW + in_seconds, source, "contract ends",  # type: ignore[arg-type]
                  reference=reference)


# -- notices ---------------------------------------------------------------------------

@pytest.mark.parametrize(("deadline", "reason"), [
    (1_577_836_800.0, "past-deadline"),  # 2020-01-01: the typo that moved the primary
    (NOW - 61, "past-deadline"),
    (NOW + 400 * 86400, "far-deadline"),
])
@pytest.mark.parametrize("source", ["webhook", "cli", "mailbox", "api"])
def test_a_deadline_long_past_or_years_ahead_is_refused_and_counted(
        deployment: HandBuiltDeployment, deadline: float, reason: str, source: str) -> None:
    controller = controller_of(deployment)
    if source == "mailbox" and deadline == NOW - 61:
        deadline = NOW - 86401  # letters tell what already happened: a day is allowed
    with pytest.raises(NoticeRefused) as info:
        controller.deliver(Notice("aws", deadline, source))  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert controller.store.notices(pending=False) == []
    metrics = controller.metrics.text().decode()
    assert f'failover_notices_refused_total{{reason="{reason}",source="{source}"}} 1.0' \
        in metrics
    assert decide(controller).action == "none"  # nothing moves


def test_a_deadline_inside_the_allowance_is_taken(deployment: HandBuiltDeployment) -> None:
    controller = controller_of(deployment)
    assert controller.deliver(Notice("aws", NOW - 59, "cli")) is True
    assert controller.deliver(Notice("aws", NOW - 3600, "mailbox", reference="<a@b>")) is True


def test_a_notice_for_the_primarys_provider_moves_it_again_after_a_move_back(
        deployment: HandBuiltDeployment) -> None:
    controller = healthy(controller_of(deployment))
    first = notice(60, reference="drill-1")
    assert controller.deliver(first) is True
    controller.store.save_move(move("done"))  # the move answered it; the primary moved back
    assert controller.store.notices() == []
    # A second notice 40 s later, in the same minute: a notice of its own.
    second = notice(100, reference="drill-2")
    assert controller.deliver(second) is True
    assert [n.reference for n in controller.store.notices()] == ["drill-2"]
    assert decide(controller).action == "start"


def test_an_answered_notice_heard_again_counts_while_its_provider_holds_the_primary(
        deployment: HandBuiltDeployment) -> None:
    controller = controller_of(deployment)
    first = notice(60, source="cli", reference="")
    controller.deliver(first)
    controller.store.save_move(move("done"))
    controller.primary = "hetzner"  # aws left: hearing it again changes nothing
    assert controller.deliver(first) is False
    assert controller.store.notices() == []
    controller.primary = "aws"  # moved back to the provider that is leaving: move again
    assert controller.deliver(first) is True
    assert len(controller.store.notices()) == 1


# -- a run someone else holds ------------------------------------------------------------

def test_a_run_whose_lock_is_held_is_waited_for_not_resumed(
        deployment: HandBuiltDeployment) -> None:
    controller = controller_of(deployment)
    plan = plan_switchover(deployment, "hetzner", STREAMING)
    run_id = deployment.journal.begin(plan)
    deployment.journal.step_started(run_id, 1, plan.steps[1].action)  # lower_ttl: changes
    held = threading.Event()
    release = threading.Event()

    def by_hand() -> None:  # `failover switchover` in another process, as far as locks go
        with run_lock(deployment):
            held.set()
            release.wait(10)

    hand = threading.Thread(target=by_hand)
    hand.start()
    try:
        assert held.wait(10)
        decisions = [decide(controller) for _ in range(3)]
    finally:
        release.set()
        hand.join()
    assert {d.action for d in decisions} == {"none"}
    assert decisions[0].sentence == (f"run {run_id} (switchover aws -> hetzner) is under way in "
                                     "another process (it holds the run lock); waiting for it")
    # Said once: the loop logs a sentence only when it changes.
    assert len({d.sentence for d in decisions}) == 1
    # With nobody holding the lock, the same journal says: interrupted, resume it.
    after = decide(controller)
    assert (after.action, after.run_id) == ("resume", run_id)


# -- _act: decisions carried out -------------------------------------------------------

def test_a_proposal_is_kept_and_nothing_runs(deployment: HandBuiltDeployment) -> None:
    executor = JournalingExecutor()
    controller = controller_of(deployment, executor)
    act(controller, Decision("propose", "proposed", move("proposed")))
    assert controller.store.move("m1") == move("proposed")
    assert executor.plans == [] and deployment.journal.last() is None


def test_a_started_switchover_runs_once_and_its_move_is_done(
        deployment: HandBuiltDeployment) -> None:
    executor = JournalingExecutor()
    controller = controller_of(deployment, executor)
    controller.deliver(notice())
    act(controller, Decision("start", "go", move("started")))
    [plan] = executor.plans
    assert (plan.kind, plan.from_site, plan.to_site) == ("switchover", "aws", "hetzner")
    run = deployment.journal.last()
    assert run is not None and run.outcome == "ok"
    done = controller.store.move("m1")
    assert done is not None and (done.state, done.run_id) == ("done", run.id)
    assert controller.primary == "hetzner"
    assert controller.store.notices() == []  # the finished move answered the notice
    assert controller._running is None


def test_a_preparation_leaves_the_move_prepared(deployment: HandBuiltDeployment) -> None:
    executor = JournalingExecutor()
    controller = controller_of(deployment, executor)
    act(controller, Decision("prepare", "prepare", move("scheduled")))
    assert [p.kind for p in executor.plans] == ["prepare"]
    prepared = controller.store.move("m1")
    assert prepared is not None and prepared.state == "prepared"
    assert controller.primary == "aws"


def test_a_refused_plan_puts_the_move_back_with_the_reason(tmp_path: Path) -> None:
    executor = JournalingExecutor()
    controller = controller_of(HandBuiltDeployment(tmp_path, ALONE), executor)
    act(controller, Decision("start", "go", move("started")))
    back = controller.store.move("m1")
    assert back is not None and back.state == "scheduled"
    assert back.refused_at == NOW
    assert "hetzner is not a standby streaming from aws" in back.refusal
    assert executor.plans == [] and controller.deployment.journal.last() is None


def test_a_lock_held_by_someone_else_puts_the_move_back_untouched(
        deployment: HandBuiltDeployment) -> None:
    executor = JournalingExecutor()
    controller = controller_of(deployment, executor)
    approved = move("started", approved=NOW - 5)
    with run_lock(deployment):
        act(controller, Decision("start", "go", approved))
    back = controller.store.move("m1")
    assert back is not None and back.state == "approved"  # the approval still counts
    assert back.run_id is None
    assert executor.plans == [] and deployment.journal.last() is None


def test_a_failed_run_stays_tied_to_its_move(deployment: HandBuiltDeployment) -> None:
    executor = JournalingExecutor(fail_at="promote")
    controller = controller_of(deployment, executor, clock=time.time)  # the journal's clock
    act(controller, Decision("start", "go", move("started")))
    run = deployment.journal.last()
    assert run is not None and run.outcome == "failed"
    failed = controller.store.move("m1")
    assert failed is not None and (failed.state, failed.run_id) == ("started", run.id)
    assert controller.primary == "aws"
    decision = decide(controller)  # the policy retries it after a pause, not at once
    assert decision.action == "none" and "trying again in" in decision.sentence


def test_a_superseded_move_is_marked_and_the_emergency_runs(
        deployment: HandBuiltDeployment) -> None:
    executor = JournalingExecutor()
    deployment.topology = Topology({"aws": SiteView("aws", error="timed out"),
                                    "hetzner": SiteView("hetzner", "standby", "0/1")})
    controller = controller_of(deployment, executor)
    controller.store.save_move(move("scheduled"))
    emergency = replace(move("started", kind="promote"), id="m2")
    act(controller, Decision("start", "aws is down", emergency, supersedes="m1"))
    old = controller.store.move("m1")
    assert old is not None and old.state == "superseded"
    assert [p.kind for p in executor.plans] == ["promote"]
    new = controller.store.move("m2")
    assert new is not None and new.state == "done"


def test_a_failed_preparation_is_abandoned_and_its_move_waits_again(
        deployment: HandBuiltDeployment) -> None:
    controller = controller_of(deployment, JournalingExecutor(fail_at="sync_objects"))
    act(controller, Decision("prepare", "prepare", move("scheduled")))
    run = deployment.journal.last()
    assert run is not None and run.outcome == "failed"
    decision = decide(controller)
    assert (decision.action, decision.run_id) == ("abandon", run.id)
    act(controller, decision)
    assert deployment.journal.run(run.id).outcome == "abandoned"
    waiting = controller.store.move("m1")
    assert waiting is not None and (waiting.state, waiting.run_id) == ("scheduled", None)


# -- notifications' secret -------------------------------------------------------------

@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("FAILOVER_WEBHOOK_SECRET", "FAILOVER_NOTIFY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    write_private(tmp_path / "webhook.secret", "inbound-secret\n")
    write_private(tmp_path / "notify.secret", "outbound-secret\n")
    yield tmp_path


def test_notifications_are_never_signed_with_the_webhooks_secret(
        deployment: HandBuiltDeployment, secrets: Path) -> None:
    watch = deployment.config.watch.model_copy(update={
        "notify_url": "http://127.99.0.9:9/hook",
        "webhook_secret_file": secrets / "webhook.secret"})
    with pytest.raises(ConfigError, match="no secret signs the notifications"):
        load_notify_secret(watch)
    same = watch.model_copy(update={"notify_secret_file": secrets / "webhook.secret"})
    with pytest.raises(ConfigError, match="the notify secret is the webhook secret"):
        load_notify_secret(same)
    own = watch.model_copy(update={"notify_secret_file": secrets / "notify.secret"})
    assert load_notify_secret(own) == b"outbound-secret"
    assert load_notify_secret(deployment.config.watch) is None  # no notify_url: no secret
    controller = Controller(deployment, notify_secret=load_notify_secret(own))
    assert controller.notifier.secret == b"outbound-secret"
    controller.notifier.close()
