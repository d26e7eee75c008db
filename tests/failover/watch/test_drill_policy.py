"""Scheduled drills: the config's one-line errors, and the guard rails on hand-made states."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from failover.config import parse_config
from failover.exceptions import ConfigError
from failover.watch.drillconfig import DrillSchedule, FreezeWindow, last_fire
from failover.watch.drillpolicy import RETRY_PAUSE, DrillState, decide, due, frozen, unwell
from failover.watch.policy import Move, RunSummary, Settings
from infra.lab.config import lab_config
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from tests.failover.watch.test_policy import notice, snap

# 2027-01-15 10:30:20 UTC, a Friday
NOW = datetime(2027, 1, 15, 10, 30, 20, tzinfo=UTC).timestamp()
HOURLY = DrillSchedule(scenario="termination-notice", schedule="0 * * * *")
EVERY_MINUTE = DrillSchedule(scenario="provider-blackout", schedule="* * * * *")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def state(**kw: Any) -> DrillState:
    """All well, the hourly drill's last run yesterday, nothing under way."""
    fields: dict[str, Any] = {
        "now": NOW, "snapshot": snap(now=NOW), "drills": (HOURLY,),
        "watching_since": NOW - 86400 * 7, "last_runs": {"termination-notice": NOW - 86400}}
    fields.update(kw)
    return DrillState(**fields)


# -- the configuration ------------------------------------------------------------------

def config_with(minimal_config: dict[str, Any], **watch: Any) -> dict[str, Any]:
    return {**minimal_config, "watch": {**minimal_config.get("watch", {}), **watch}}


@pytest.fixture
def minimal_config(tmp_path: Path) -> dict[str, Any]:
    """The lab's configuration, as data (its files need not exist to parse)."""
    return lab_config(LabLayout(), LabPaths(tmp_path))


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "f.yaml", Path("/"))
    return [line.removeprefix("  - ") for line in str(caught.value).splitlines()[1:]]


def test_a_schedule_and_freeze_windows_load(minimal_config: dict[str, Any]) -> None:
    config = parse_config(config_with(
        minimal_config,
        drills=[{"scenario": "termination-notice", "schedule": "0 10 * * 2",
                 "options": {"notice": 30, "rate": 20}, "abort": {"error_rate": 0.05}}],
        freeze_windows=[{"cron": "0 8 * * 1-5", "duration_minutes": 600}]), "f.yaml", Path("/"))
    [drill] = config.watch.drills
    assert (drill.scenario, drill.options.notice, drill.options.rate) == (
        "termination-notice", 30, 20)
    assert (drill.abort.error_rate, drill.abort.write_unavailable_seconds) == (0.05, None)
    assert config.watch.freeze_windows[0].duration_minutes == 600


def test_every_bad_drill_entry_is_one_line_with_its_path(minimal_config: dict[str, Any]) -> None:
    found = problems(config_with(minimal_config, drills=[
        {"scenario": "meteor-strike", "schedule": "0 10 * * 2"},
        {"scenario": "partition", "schedule": "0 10 * *"},
        {"scenario": "termination-notice", "schedule": "@daily",
         "abort": {"error_rate": 1.5}, "options": {"users": 0}},
    ], freeze_windows=[{"cron": "61 * * * *", "duration_minutes": 0}]))
    assert found[0].startswith("watch.drills.0.scenario: 'meteor-strike' is not a scenario "
                               "(scheduled drills: termination-notice, provider-blackout")
    assert found[1].startswith("watch.drills.1.scenario: 'partition' cannot be scheduled")
    assert found[2].startswith("watch.drills.1.schedule: '0 10 * *' is not a cron schedule")
    assert any(p.startswith("watch.drills.2.options.users:") for p in found)
    assert any(p.startswith("watch.drills.2.abort.error_rate:") for p in found)
    assert any(p.startswith("watch.freeze_windows.0.cron: '61 * * * *' is not a cron")
               for p in found)
    assert any(p.startswith("watch.freeze_windows.0.duration_minutes:") for p in found)
    assert all("\n" not in p for p in found)


def test_a_scenario_scheduled_twice_is_refused(minimal_config: dict[str, Any]) -> None:
    found = problems(config_with(minimal_config, drills=[
        {"scenario": "termination-notice", "schedule": "0 10 * * 2"},
        {"scenario": "termination-notice", "schedule": "0 10 * * 4"}]))
    assert found == ["watch.drills: termination-notice is scheduled twice: give it one "
                     "schedule (cron lists and ranges combine times)"]


def test_the_last_fire_is_at_or_before_now() -> None:
    now = datetime(2027, 1, 15, 10, 30, 20, tzinfo=UTC)
    assert last_fire("0 * * * *", now) == datetime(2027, 1, 15, 10, 0, tzinfo=UTC)
    assert last_fire("30 10 * * *", now) == datetime(2027, 1, 15, 10, 30, tzinfo=UTC)
    assert last_fire("0 10 * * 2", now) == datetime(2027, 1, 12, 10, 0, tzinfo=UTC)


# -- due --------------------------------------------------------------------------------

def test_a_drill_is_due_once_its_time_passed_since_its_last_run() -> None:
    assert due(HOURLY, state()) == at("2027-01-15T10:00:00")
    assert due(HOURLY, state(last_runs={"termination-notice": at("2027-01-15T10:00:02")})) \
        is None


def test_times_missed_are_made_up_once() -> None:
    # Held back all morning: due for the latest time only, and after it runs, not again.
    held = state(last_runs={"termination-notice": at("2027-01-15T06:00:01")})
    assert due(HOURLY, held) == at("2027-01-15T10:00:00")
    ran = state(last_runs={"termination-notice": at("2027-01-15T10:30:05")})
    assert due(HOURLY, ran) is None


def test_a_drill_never_run_counts_from_when_the_controller_began() -> None:
    fresh = state(last_runs={}, watching_since=at("2027-01-15T10:10:00"))
    assert due(HOURLY, fresh) is None  # 10:00 was before the controller watched
    assert due(EVERY_MINUTE, state(drills=(EVERY_MINUTE,), last_runs={},
                                   watching_since=at("2027-01-15T10:10:00"))) == \
        at("2027-01-15T10:30:00")


def test_a_drill_that_could_not_start_waits_before_trying_again() -> None:
    refused = {"termination-notice": NOW - 5}
    assert due(HOURLY, state(refused=refused)) is None
    assert due(HOURLY, state(now=NOW - 5 + RETRY_PAUSE, refused=refused)) is not None


# -- the rails ------------------------------------------------------------------------

def test_all_well_and_due_starts_the_drill() -> None:
    decision = decide(state())
    assert decision.action == "start"
    assert decision.drill == HOURLY
    assert decision.sentence == ("drill termination-notice due since 2027-01-15 10:00:00Z: "
                                 "all is well; starting it")


def test_nothing_due_starts_nothing() -> None:
    decision = decide(state(last_runs={"termination-notice": at("2027-01-15T10:00:05")}))
    assert (decision.action, decision.sentence) == ("none", "no drill is due")


def test_one_drill_at_a_time() -> None:
    decision = decide(state(under_way=("drill ab12 (provider-blackout, cli)",)))
    assert decision.action == "none"
    assert decision.sentence.endswith("waits: one at a time, and drill ab12 "
                                      "(provider-blackout, cli) is under way")


def test_a_freeze_window_holds_drills_back_until_it_ends() -> None:
    office = FreezeWindow(cron="0 8 * * 1-5", duration_minutes=600)
    assert frozen([office], NOW) == "freeze window '0 8 * * 1-5' holds until 2027-01-15 18:00:00Z"
    assert frozen([office], at("2027-01-15T18:00:00")) is None
    assert frozen([office], at("2027-01-16T10:00:00")) is None  # a Saturday
    decision = decide(state(freeze_windows=(office,)))
    assert decision.action == "none" and "freeze window" in decision.sentence


@pytest.mark.parametrize(("change", "why"), [
    ({"run": RunSummary("r1", "switchover", "aws", "hetzner", "running", 1, None)},
     "run r1 (switchover) is running"),
    ({"notices": (notice(),)}, "a notice is pending (aws, webhook)"),
    ({"moves": (Move("m1", "switchover", "aws", "hetzner", "aws", "notice", 0.0, 0.0,
                     "scheduled"),)}, "move m1 (switchover to hetzner) is scheduled"),
    ({"primary": None}, "no site is known as the primary"),
    ({"settings": Settings(failures=3, needed=2, vantages=("a", "b"), mode="approve")},
     "the controller is in approve mode"),
])
def test_a_drill_waits_while_anything_is_pending(change: dict[str, Any], why: str) -> None:
    assert (unwell(snap(now=NOW, **change)) or "").startswith(why)
    decision = decide(state(snapshot=snap(now=NOW, **change)))
    assert decision.action == "none" and why in decision.sentence


def test_a_drill_waits_while_a_site_is_unwell() -> None:
    assert unwell(snap({("hetzner", "b"): "uud"})) == \
        "hetzner's app does not answer at b (timed out after 1.0s)"
    history = dict(snap().history)
    history[("database", "hetzner", "a")] = ()
    assert unwell(snap(history=history)) == \
        "hetzner's database is not a healthy standby (not yet probed)"
    assert unwell(snap(primary="hetzner")) == \
        "aws's database is not a healthy standby (primary)"
    assert unwell(snap()) is None
