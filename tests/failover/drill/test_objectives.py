"""What each scenario expects, judged over hand-built measurements (no lab, no server)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from failover.drill.objectives import (
    Measured,
    archive_fresh,
    archived_writes_kept,
    judge,
    move_finished_before_deadline,
    no_split_brain_writes,
    nothing_lost,
    rpo_met,
    rto_met,
    run_ok,
    settled_media_kept,
)
from failover.drill.results import Promise, Verdict
from failover.drill.scenarios import SCENARIOS, DrillContext, Scenario
from failover.engine.journal import Event, RunRecord
from failover.engine.plan import Plan, PlanKind, Step

FAULT = 1_000.0  # time.time() of the fault in these drills
PROMISE = Promise(rto_seconds=15.0, rpo_writes=2)


def a_run(ended: float | None, outcome: str = "ok", *,
          kind: PlanKind = "switchover") -> RunRecord:
    """A two-step run begun 0.5 s after the fault; ``ended``: None if it never ended."""
    plan = Plan(kind, "aws", "hetzner",
                (Step("fence", "Make aws read-only"), Step("promote", "Promote hetzner")))
    began = FAULT + 0.5
    events = [
        Event(None, "run", "start", None, began, None, None),
        Event(0, "fence", "start", None, began + 0.1, None, None),
        Event(0, "fence", "end", "ok", began + 0.6, None, {"warnings": ["aws: slow"]}),
        Event(1, "promote", "start", None, began + 0.6, None, None),
    ]
    if ended is not None:
        events += [Event(1, "promote", "end", outcome, ended, None, None),
                   Event(None, "run", "end", outcome, ended, None, None)]
    return RunRecord("r-1", plan, began, tuple(events))


def measured(*, rto: float | None = 7.0, lost: int = 0, split: int = 0,
             run: RunRecord | None = None, ended: float = FAULT + 40,
             notice: float = 20.0, settled_media_lost: int = 0) -> Measured:
    return Measured(FAULT, ended, rto, lost, split, run, PROMISE, notice,
                    settled_media_lost=settled_media_lost)


def names(scenario: Scenario) -> list[str]:
    return [objective.__name__ for objective in scenario.objectives()]


# -- what each scenario expects ----------------------------------------------------------------


def test_a_termination_notice_expects_the_move_done_before_the_deadline() -> None:
    assert names(SCENARIOS["termination-notice"]) == [
        "rto_met", "nothing_lost", "run_ok", "move_finished_before_deadline"]


def test_a_fault_without_notice_is_held_to_the_promised_rpo() -> None:
    assert names(SCENARIOS["db-primary-crash"]) == ["rto_met", "rpo_met",
                                                     "settled_media_kept", "run_ok"]


@pytest.mark.parametrize("name", ["provider-blackout", "partition"])
def test_an_old_primary_that_comes_back_must_take_no_write(name: str) -> None:
    # A blackout also takes the leading controller's site: the move must still run once.
    once = ["move_ran_once"] if name == "provider-blackout" else []
    assert names(SCENARIOS[name]) == ["rto_met", "rpo_met", "settled_media_kept",
                                     "run_ok", "no_split_brain_writes", *once]


@pytest.mark.parametrize("name", ["dns-provider-loss", "credentials-revoked"])
def test_other_planned_moves_may_lose_nothing(name: str) -> None:
    assert names(SCENARIOS[name]) == ["rto_met", "nothing_lost", "run_ok"]


def test_a_scenario_of_ones_own_brings_its_own_objectives() -> None:
    def quick(m: Measured) -> Verdict:
        return Verdict("quick_seconds", 5.0, m.rto_seconds, (m.rto_seconds or 99) <= 5.0)

    def inject(_ctx: DrillContext) -> str:
        return "nothing"

    def act(_ctx: DrillContext) -> RunRecord | None:
        return None

    mine = Scenario("quick", "a fast one", planned=False, inject=inject, act=act,
                    expects=(quick,))
    verdicts = judge(mine.objectives(), measured(rto=7.0, run=a_run(FAULT + 3)))
    assert [v.objective for v in verdicts] == ["rto_seconds", "rpo_writes",
                                               "media_lost_2s_before_fault", "run",
                                               "quick_seconds"]
    assert verdicts[-1] == Verdict("quick_seconds", 5.0, 7.0, met=False)


# -- each objective ----------------------------------------------------------------------------


def test_the_rto_is_met_at_the_limit_and_missed_when_writes_never_came_back() -> None:
    assert rto_met(measured(rto=15.0)) == Verdict("rto_seconds", 15.0, 15.0, met=True)
    assert not rto_met(measured(rto=15.001)).met
    assert rto_met(measured(rto=None)) == Verdict("rto_seconds", 15.0, None, met=False)


def test_the_rpo_allows_what_was_promised_and_a_notice_allows_nothing() -> None:
    assert rpo_met(measured(lost=2)) == Verdict("rpo_writes", 2, 2, met=True)
    assert not rpo_met(measured(lost=3)).met
    assert nothing_lost(measured(lost=0)) == Verdict("rpo_writes", 0, 0, met=True)
    assert nothing_lost(measured(lost=1)) == Verdict("rpo_writes", 0, 1, met=False)


def test_a_write_the_old_primary_took_after_the_promotion_fails_the_drill() -> None:
    assert no_split_brain_writes(measured(split=0)) == Verdict("split_brain_writes", 0, 0,
                                                               met=True)
    assert no_split_brain_writes(measured(split=1)) == Verdict("split_brain_writes", 0, 1,
                                                               met=False)
    # Judged apart from the RPO: the promise may allow lost writes, never a second primary.
    assert rpo_met(measured(lost=2)).met and not no_split_brain_writes(measured(split=2)).met


def test_the_run_must_end_well() -> None:
    assert run_ok(measured(run=a_run(FAULT + 3))) == Verdict("run", "ok", "ok", met=True)
    assert run_ok(measured(run=a_run(FAULT + 3, "failed"))).measured == "failed"
    assert run_ok(measured(run=a_run(None))) == Verdict("run", "ok", "interrupted", met=False)
    assert run_ok(measured(run=None)) == Verdict("run", "ok", "no run", met=False)


def test_a_move_that_ends_before_the_deadline_meets_it() -> None:
    verdict = move_finished_before_deadline(measured(run=a_run(FAULT + 9.25), notice=20))
    assert verdict == Verdict("move_finished_seconds", 20, 9.25, met=True)
    at_the_deadline = move_finished_before_deadline(measured(run=a_run(FAULT + 20)))
    assert at_the_deadline is not None and at_the_deadline.met


def test_a_move_that_ends_late_or_never_misses_the_deadline() -> None:
    late = move_finished_before_deadline(measured(run=a_run(FAULT + 21), notice=20))
    assert late == Verdict("move_finished_seconds", 20, 21.0, met=False)
    # Never ended: it counts as going on until the workload stopped.
    never = move_finished_before_deadline(measured(run=a_run(None), ended=FAULT + 35))
    assert never == Verdict("move_finished_seconds", 20, 35.0, met=False)


def test_no_run_no_deadline_verdict() -> None:
    assert move_finished_before_deadline(measured(run=None)) is None
    verdicts = judge(SCENARIOS["termination-notice"].objectives(), measured(run=None))
    assert [v.objective for v in verdicts] == ["rto_seconds", "rpo_writes", "run"]
    assert not all(v.met for v in verdicts)  # the missing run fails the drill all the same


def test_media_older_than_the_grace_at_the_fault_must_all_be_kept() -> None:
    kept = settled_media_kept(measured(lost=2))  # lost, but within the grace: allowed
    lost = settled_media_kept(measured(lost=2, settled_media_lost=1))
    assert (kept.objective, kept.met, lost.met, lost.measured) == (
        "media_lost_2s_before_fault", True, False, 1)


def test_a_rebuild_loses_nothing_older_than_its_archive_was_at_the_fault() -> None:
    def with_ages(*ages: float, archive_age: float | None) -> Measured:
        return replace(measured(), lost_write_ages=ages, archive_age=archive_age)

    kept = archived_writes_kept(with_ages(0.5, 4.0, archive_age=3.0))  # within 3 s + margin
    lost = archived_writes_kept(with_ages(0.5, 9.0, archive_age=3.0))
    unknown = archived_writes_kept(with_ages(6.5, archive_age=None))  # the lab's 5 s + margin
    assert (kept.met, lost.met, lost.measured, unknown.met) == (True, False, 1, True)
    assert archive_fresh(with_ages(archive_age=4.0)).met
    assert not archive_fresh(with_ages(archive_age=30.0)).met
    assert not archive_fresh(with_ages(archive_age=None)).met  # not known is not kept up
