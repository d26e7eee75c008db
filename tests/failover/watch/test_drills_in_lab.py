"""Scheduled drills in a lab of this module's own (127.84): the controller runs them, and
each is failed back (one it stops in the middle of too); an aborted drill is rolled back; a
controller killed mid-drill fails its drill back when it starts again, and a freeze window
then holds the next one back; `failover drill history --json` lists them all.

The controller runs as a real ``failover watch`` process over a copy of the lab's
configuration with a ``watch.drills`` section; the tests wait on the drill history.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from failover.drill.controller import DrillController
from failover.drill.history import DrillHistory, HistoryEntry, history_path
from failover.engine.deployment import open_deployment
from failover.processes import is_alive, send
from failover.waiting import wait_for
from tests.conftest import RunningLab, own_lab
from tests.failover.engine.test_moves_in_lab import assert_whole, failover
from tests.failover.watch.test_controller_in_lab import log_tails

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]  # drills take minutes

lab = own_lab("127.84", "failover-test-drill-schedule-")
QUICK = {"notice": 20, "settle": 1, "rate": 20, "warmup": 2}  # a move takes ~9 s
CLI_QUICK = ("--notice", "20", "--settle", "1", "--rate", "20")
DRILL_TIME = 240.0  # seconds: one drill, its fail back and the controller's looks after
MINUTELY = {"scenario": "termination-notice", "schedule": "* * * * *", "options": QUICK}


def config_with(lab: RunningLab, name: str, **watch: Any) -> Path:
    """A copy of the lab's configuration beside it (its relative paths hold), ``watch`` added."""
    root = lab.lab.paths.root
    config = yaml.safe_load((root / "failover.yaml").read_text())
    config["watch"].update(watch)
    path = root / name
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def watching(lab: RunningLab, config: Path, name: str,
             stop_within: float = 15.0) -> Iterator[DrillController]:
    """A controller process over ``config``, stopped by PID whatever happens (SIGTERM, then
    SIGKILL after ``stop_within`` seconds).

    When the test fails inside, the controller is stopped with SIGABRT first: Python's
    fault handler writes where each of its threads stood into its log, shown below.
    """
    controller = DrillController(open_deployment(config, None), lab.lab.paths.logs / f"{name}.log")
    controller.start(env={"PYTHONFAULTHANDLER": "1"})
    try:
        yield controller
    except BaseException:
        record = controller.record
        if record is not None and send(record, signal.SIGABRT):
            wait_for(lambda: not is_alive(record), timeout=10, what="the controller to dump "
                     "its threads", retry_on=())
        raise
    finally:
        controller.stop(stop_within)
        print(log_tails(controller, 20000))  # shown by pytest when a test fails


def history(lab: RunningLab) -> DrillHistory:
    return DrillHistory(history_path(open_deployment(None, lab.lab.paths.root).config.journal))


def ended(lab: RunningLab, trigger: str, count: int) -> list[HistoryEntry] | None:
    """The drills of ``trigger`` that ended, once there are ``count`` of them."""
    found = [e for e in history(lab).entries() if e.trigger == trigger]
    return found if len(found) >= count else None


def next_minute(after: float) -> datetime:
    return (datetime.fromtimestamp(after, UTC) + timedelta(minutes=1)).replace(second=0,
                                                                               microsecond=0)


def test_a_controller_with_a_one_minute_schedule_runs_two_drills_in_a_row(
        lab: RunningLab) -> None:
    # The first drill fires at the next minute, the second at the one after (or at once, if
    # the first ran past it: a loaded machine).
    if datetime.now(UTC).second > 50:  # so that the controller is up before the minute turns
        wait_for(lambda: datetime.now(UTC).second < 50, timeout=15, what="the minute to turn",
                 retry_on=())
    first = next_minute(time.time())
    config = config_with(lab, "failover-drills.yaml", drills=[MINUTELY])
    # Stopped on purpose, the controller aborts a third drill it may have begun and waits
    # for its fail back: up to a drill's time.
    with watching(lab, config, "watch-drills", stop_within=DRILL_TIME) as controller:
        drills = wait_for(lambda: ended(lab, "schedule", 2), timeout=2 * DRILL_TIME,
                          what="two scheduled drills to end", retry_on=())[:2]
        assert [d.scenario for d in drills] == ["termination-notice"] * 2
        for drill in drills:
            assert drill.failed_back, drill
            assert drill.aborted is None and drill.error is None, drill
            assert drill.rto_seconds is not None and drill.acked_writes > 0
            assert drill.started >= first - timedelta(seconds=1)
            assert drill.report_dir and (Path(drill.report_dir) / "report.json").exists()
        metrics = httpx.get(f"{controller.url}/metrics", timeout=5).text
        label = '{scenario="termination-notice"}'
        if any(d.passed for d in drills):
            assert f"failover_drill_last_success_timestamp_seconds{label}" in metrics
        assert f"failover_drill_rto_seconds{label} {drills[1].rto_seconds}" in metrics
        assert f"failover_drill_lost_writes{label} {float(drills[1].lost_writes)}" in metrics
        assert "failover_drills_total{" in metrics
    for third in (ended(lab, "schedule", 3) or [])[2:]:
        assert third.aborted is not None and "stopping" in third.aborted, third
        assert third.failed_back, third
    assert history(lab).under_way() == []
    assert_whole(lab, "aws")


def test_an_aborted_drill_rolls_back(lab: RunningLab) -> None:
    # An error-rate limit of 0: the first failed request (the switchover has some) aborts.
    try:
        done = failover(lab, "drill", "--yes", *CLI_QUICK, "--abort-error-rate", "0",
                        timeout=300)
    finally:  # shown by pytest when the test fails: the fail back's moves, as the hosts saw them
        for name in ("agent@hetzner", "postgres@hetzner", "agent@aws"):
            log = lab.lab.paths.logs / f"{name}.log"
            print(f"--- {name}\n" + (log.read_text()[-4000:] if log.exists() else "(none)"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ABORTED: error rate" in done.stdout
    [drill] = ended(lab, "cli", 1) or []
    assert drill.aborted is not None and "passed the limit of 0.0%" in drill.aborted
    assert drill.failed_back and not drill.passed and drill.outcome == "aborted"
    report = json.loads((Path(drill.report_dir or "") / "report.json").read_text())
    # Aborted before the deadline: the old site was never cut off.
    assert not any(e["event"].startswith("deadline:") for e in report["timeline"])
    assert report["run"]["kind"] == "switchover"  # the controller's move, finished
    assert_whole(lab, "aws")
    listed = failover(lab, "drill", "history", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["drills"]
    assert [(e["trigger"], e["outcome"] == "aborted") for e in entries][:2] == [
        ("schedule", False), ("schedule", False)]
    assert (entries[-1]["trigger"], entries[-1]["outcome"]) == ("cli", "aborted")
    assert all(e["failed_back"] for e in entries), entries


def test_a_controller_killed_mid_drill_fails_it_back_when_it_starts_again(
        lab: RunningLab) -> None:
    config = config_with(lab, "failover-drills-again.yaml", drills=[MINUTELY])
    with watching(lab, config, "watch-killed") as controller:
        def notice_pending() -> bool:
            return any(n["provider"] == "aws" for n in controller.status()["notices"])

        wait_for(notice_pending, timeout=DRILL_TIME, what="the drill's notice", retry_on=())
        record = controller.record
        assert record is not None
        send(record, signal.SIGKILL)  # mid-drill, as a crash would
        wait_for(lambda: not is_alive(record), timeout=10, what="the controller to die",
                 retry_on=())
    [left] = history(lab).under_way()
    assert not left.owner_alive
    # Started again inside a freeze window: it fails the drill back all the same (a fail
    # back is no drill), then holds the next drill back.
    began = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    frozen = config_with(lab, "failover-frozen.yaml", drills=[MINUTELY], freeze_windows=[
        {"cron": f"{began.minute} {began.hour} * * *", "duration_minutes": 60}])
    with watching(lab, frozen, "watch-restarted") as restarted:
        [drill] = wait_for(lambda: [e for e in history(lab).entries() if e.id == left.id],
                           timeout=DRILL_TIME, what="the drill to be failed back", retry_on=())
        wait_for(lambda: "waits: freeze window" in log_tails(restarted, 10**9), timeout=90,
                 what="the controller to hold the next drill back", retry_on=())
        assert history(lab).under_way() == []  # held back: none begun
    assert drill.aborted is not None and drill.aborted.startswith("its runner (pid ")
    assert drill.failed_back, drill
    assert history(lab).under_way() == []
    assert_whole(lab, "aws")
