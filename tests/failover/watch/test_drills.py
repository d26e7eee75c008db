"""The controller's drill keeper, on hand-made snapshots: when it starts a drill, what it keeps,
how the drill reaches the controller, and what a stop or a restart mid-drill does.

A drill needs the lab; here a stand-in (``StandInDrill``, named as such) plays one: it
reports the hand-built report of test_report once released, or stops when aborted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from failover.drill.abort import AbortWatch
from failover.drill.history import DrillHistory, history_path
from failover.drill.results import DrillReport, Failback
from failover.drill.runner import DrillOptions
from failover.drill.scenarios import SCENARIOS
from failover.engine.deployment import Deployment, open_deployment
from failover.waiting import wait_for
from failover.watch.drills import ControllerHands, DrillKeeper
from failover.watch.metrics import WatchMetrics
from failover.watch.notify import Notifier
from failover.watch.policy import Decision
from failover.watch.store import WatchStore, store_path
from tests.failover.drill.test_report import a_report
from tests.failover.handbuilt import lab_files
from tests.failover.watch.test_policy import notice, snap

# 2027-01-15 10:30:20 UTC: the minute's drill fired 20 s ago
NOW = datetime(2027, 1, 15, 10, 30, 20, tzinfo=UTC).timestamp()
MINUTELY = {"scenario": "termination-notice", "schedule": "* * * * *",
            "abort": {"error_rate": 0.0}}


class StandInDrill:
    """A drill's stand-in: it runs until released (its report then) or aborted."""

    released = threading.Event()

    def __init__(self, deployment: Deployment, options: DrillOptions, progress: Any, *,
                 controller: ControllerHands) -> None:
        self.deployment = deployment
        self.options = options
        self.controller = controller
        self.scenario = SCENARIOS[options.scenario]
        self.from_site, self.standby_site, self.to_site = "aws", "hetzner", "hetzner"
        self.abort = AbortWatch(options.abort, lambda _why: None)
        self.failback: Failback | None = None

    @property
    def aborted(self) -> str | None:
        return self.abort.reason

    def run(self) -> DrillReport:
        started = datetime.fromtimestamp(NOW + 1, UTC).isoformat(timespec="seconds")  # the clock's
        while not self.released.wait(0.05) and self.abort.reason is None:
            pass
        self.failback = Failback(True, 1.0, "switchover hetzner -> aws ok")
        return replace(a_report(), scenario=self.options.scenario, started=started,
                       failback=self.failback)


class ControllerParts:
    """The controller's parts the keeper uses, over a lab's files (nothing runs)."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.store = WatchStore(store_path(deployment.config.journal))
        self.metrics = WatchMetrics()
        self.notifier = Notifier(None)

    def deliver(self, given: Any) -> bool:
        return self.store.add_notice(given)


def deployment_with(tmp_path: Path, **watch: Any) -> Deployment:
    root = lab_files(tmp_path / "lab")
    deployment = open_deployment(None, root)
    config = deployment.config.model_copy(update={"watch": deployment.config.watch.model_validate(
        {**deployment.config.watch.model_dump(), **watch})})
    return Deployment(config, deployment.source)


@pytest.fixture
def clock() -> list[float]:
    return [NOW - 120]  # the controller began two minutes ago


@pytest.fixture
def keeper(tmp_path: Path, clock: list[float]) -> Iterator[DrillKeeper]:
    StandInDrill.released.clear()
    kept = DrillKeeper(ControllerParts(deployment_with(tmp_path, drills=[MINUTELY])),
                       lambda: clock[0], make_drill=StandInDrill)
    try:
        yield kept
    finally:
        StandInDrill.released.set()
        kept.stop()


def history(keeper: DrillKeeper) -> DrillHistory:
    return DrillHistory(history_path(keeper.deployment.config.journal))


def test_a_due_drill_starts_under_the_controller_and_is_kept(keeper: DrillKeeper) -> None:
    keeper.consider(snap(now=NOW))
    assert keeper.busy
    assert keeper.sentence == ("drill termination-notice due since 2027-01-15 10:30:00Z: all "
                               "is well; starting it")
    wait_for(lambda: history(keeper).under_way(), timeout=10, what="the drill to begin",
             retry_on=())
    [begun] = history(keeper).under_way()
    assert (begun.trigger, begun.scenario, begun.owner_alive) == (
        "schedule", "termination-notice", True)
    shown = keeper.status()  # /v1/status's "drills"
    assert shown["under_way"] == {"scenario": "termination-notice", "from": "aws",
                                  "to": "hetzner"}
    assert shown["scheduled"] == [{"scenario": "termination-notice", "schedule": "* * * * *"}]
    assert shown["busy"] and shown["sentence"] == keeper.sentence
    keeper.consider(snap(now=NOW + 10))  # one at a time: nothing else starts
    StandInDrill.released.set()
    wait_for(lambda: not keeper.busy, timeout=10, what="the drill to end", retry_on=())
    [entry] = history(keeper).entries()
    assert (entry.id, entry.trigger, entry.failed_back, entry.aborted) == (
        begun.id, "schedule", True, None)
    assert entry.report_dir is not None and (Path(entry.report_dir) / "report.json").exists()
    keeper.consider(snap(now=NOW + 20))  # ran for this minute's time: not due again
    assert not keeper.busy and keeper.sentence == "no drill is due"
    assert keeper.status()["under_way"] is None
    metrics = keeper.watching.metrics.text().decode()
    assert 'failover_drills_total{outcome="passed",scenario="termination-notice"} 1.0' in metrics


def test_a_drill_waits_for_the_guard_rails(keeper: DrillKeeper) -> None:
    keeper.consider(snap(now=NOW, notices=(notice(),)))
    assert not keeper.busy
    assert keeper.sentence.endswith("waits: a notice is pending (aws, webhook)")


def test_a_controller_that_stops_aborts_its_drill_and_keeps_why(keeper: DrillKeeper) -> None:
    keeper.consider(snap(now=NOW))
    wait_for(lambda: history(keeper).under_way(), timeout=10, what="the drill to begin",
             retry_on=())
    keeper.stop()
    [entry] = history(keeper).entries()
    assert (entry.outcome, entry.aborted, entry.failed_back) == (
        "aborted", "the controller is stopping", True)


def test_the_drill_reaches_the_controller_in_this_process(keeper: DrillKeeper) -> None:
    hands = ControllerHands(keeper)
    given = notice()
    answer = hands.signal(given)
    assert answer["notice"]["id"] == given.id
    assert [n.id for n in keeper.watching.store.notices()] == [given.id]
    keeper.watching.store.add_decision(NOW, Decision("none", "all well"))
    keeper.watching.store.add_decision(NOW + 1, Decision("start", "starting switchover"))
    decision = hands.first_decision(NOW)
    assert decision is not None and decision["sentence"] == "starting switchover"
    # "Stopping" it waits until a fresh snapshot shows nothing moving.
    waited: list[str] = []
    waiter = threading.Thread(target=lambda: waited.append(hands.stop()))
    waiter.start()
    keeper.consider(snap(now=NOW, notices=(given,)))
    assert waiter.is_alive()
    keeper.consider(snap(now=NOW + 1))
    waiter.join(timeout=10)
    assert waited == ["the controller has no move under way; it watches on"]


def test_a_drill_left_under_way_is_ended_once_the_controller_is_quiet(
        tmp_path: Path, clock: list[float]) -> None:
    deployment = deployment_with(tmp_path)  # no schedule: the left drill is still seen to
    kept = DrillHistory(history_path(deployment.config.journal))
    left = kept.begin("termination-notice", trigger="schedule", from_site="aws",
                      standby_site="hetzner", to_site="hetzner")
    with kept._db() as db:  # as a controller killed mid-drill left it
        db.execute("UPDATE drills SET owner_ticks = owner_ticks + 1")
    keeper = DrillKeeper(ControllerParts(deployment), lambda: clock[0], make_drill=StandInDrill)
    try:
        keeper.consider(snap(now=NOW, notices=(notice(),)))
        assert keeper.busy and keeper.sentence.startswith(f"drill {left} (termination-notice) "
                                                          "was left under way")
        assert kept.under_way()  # a notice is pending: the fail back waits
        keeper.consider(snap(now=NOW + 1))
        wait_for(lambda: not keeper.busy, timeout=30, what="the recovery", retry_on=())
    finally:
        keeper.stop()
    [entry] = kept.entries()
    assert entry.id == left and entry.aborted is not None
    assert entry.aborted.startswith("its runner (pid ")
    # The unit layer has no lab: the fail back is refused, and said so.
    assert (entry.failed_back, entry.outcome) == (False, "error")
    assert entry.error is not None and "holds no lab" in entry.error

