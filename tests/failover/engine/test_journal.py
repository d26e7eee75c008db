"""The journal: append-only, and it tells a run's outcome and progress back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from failover.engine.journal import Journal
from failover.engine.plan import Plan, Step


def two_step_plan() -> Plan:
    return Plan("switchover", "aws", "hetzner", (
        Step("check_switchover", "look", {"from": "aws"}, 5, retry=True, changes=False),
        Step("fence", "fence aws", {"site": "aws"}, 5),
    ))


def test_a_new_run_is_interrupted_until_it_ends(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    run_id = journal.begin(two_step_plan())
    assert journal.run(run_id).outcome == "interrupted"
    assert not journal.run(run_id).changed_anything()
    journal.step_started(run_id, 0, "check_switchover")
    journal.step_ended(run_id, 0, "check_switchover", "ok", result={"lag_bytes": 0})
    assert not journal.run(run_id).changed_anything()  # a read-only step changes nothing
    journal.step_started(run_id, 1, "fence")
    record = journal.run(run_id)
    assert record.changed_anything() and record.done() == {0}
    assert record.steps()[0].result == {"lag_bytes": 0}
    journal.step_ended(run_id, 1, "fence", "failed", error="aws refused")
    journal.ended(run_id, "failed", "step 2/2 fence failed: aws refused")
    record = journal.run(run_id)
    assert record.outcome == "failed" and record.error is not None and "aws refused" in record.error


def test_a_resumed_run_counts_attempts_and_can_finish(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    run_id = journal.begin(two_step_plan())
    journal.step_started(run_id, 0, "check_switchover")
    journal.step_ended(run_id, 0, "check_switchover", "ok", result={})
    journal.step_started(run_id, 1, "fence")  # then the process died
    journal.resumed(run_id)
    assert journal.run(run_id).outcome == "interrupted"
    journal.step_started(run_id, 1, "fence")
    journal.step_ended(run_id, 1, "fence", "ok", result={"lsn": "0/3000060"})
    journal.ended(run_id, "ok")
    record = journal.run(run_id)
    assert record.finished and record.done() == {0, 1}
    steps = record.steps()
    assert [s.attempts for s in steps] == [1, 2]
    assert steps[1].seconds is not None and steps[1].seconds >= 0
    assert journal.last() == record
    assert record.to_dict()["steps"][1]["result"] == {"lsn": "0/3000060"}


def test_rows_cannot_be_changed_or_removed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    run_id = journal.begin(two_step_plan())
    with sqlite3.connect(path) as db:
        for statement in ("UPDATE events SET outcome = 'ok'", "DELETE FROM events",
                          "UPDATE runs SET kind = 'promote'", "DELETE FROM runs"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
    assert journal.run(run_id).plan == two_step_plan()


def test_an_empty_journal_has_no_runs(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "missing" / "journal.sqlite")
    assert journal.runs() == [] and journal.last() is None
