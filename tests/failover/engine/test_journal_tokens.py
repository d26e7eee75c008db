"""Leaders' fencing tokens in the run journal and the executor: a deposed leader writes nothing.

Two ``Journal`` objects over one file stand for two controllers, the deposed
one and the new leader, as two processes would open it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failover.engine.executor import execute
from failover.engine.journal import Journal
from failover.engine.plan import Plan, Step
from failover.engine.steps import ACTIONS, StepContext
from failover.exceptions import StaleToken
from tests.failover.engine.test_journal import two_step_plan
from tests.failover.handbuilt import FakeDeployment

PROBE = "token_probe"  # an action of this module's, registered for a test


def counts(path: Path) -> tuple[int, int]:
    """(runs, events) in the journal file."""
    with sqlite3.connect(path) as db:
        return (db.execute("SELECT count(*) FROM runs").fetchone()[0],
                db.execute("SELECT count(*) FROM events").fetchone()[0])


def fixed(token: int | None) -> Callable[[], int | None]:
    return lambda: token


def test_a_stale_writer_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    old, new = Journal(path, token=fixed(6)), Journal(path, token=fixed(7))
    run_id = old.begin(two_step_plan())
    old.step_started(run_id, 0, "check_switchover")
    new.resumed(run_id)  # the new leader takes the run over
    assert new.newest_token() == 7
    before = counts(path)
    writes: list[Callable[[], object]] = [
        lambda: old.begin(two_step_plan()),
        lambda: old.resumed(run_id),
        lambda: old.step_started(run_id, 1, "fence"),
        lambda: old.step_ended(run_id, 0, "check_switchover", "ok", result={"lag_bytes": 0}),
        lambda: old.ended(run_id, "failed", "a late failure"),
    ]
    for write in writes:
        with pytest.raises(StaleToken) as stale:
            write()
        assert str(stale.value) == (
            f"token 6 is older than 7, the newest the journal {path} has seen: a deposed "
            "leader's request; nothing was done")
    assert counts(path) == before
    assert new.run(run_id).outcome == "interrupted"  # the new leader's resume stands


def test_a_newer_token_raises_the_floor_for_every_run(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    leader: dict[str, int | None] = {"token": 3}
    journal = Journal(path, token=lambda: leader["token"])
    first = journal.begin(two_step_plan())
    leader["token"] = 5  # re-elected, with a newer token
    journal.ended(first, "ok")
    assert journal.newest_token() == 5
    with pytest.raises(StaleToken):  # another run, not only the one the token raised
        Journal(path, token=fixed(4)).begin(two_step_plan())
    with sqlite3.connect(path) as db:  # each leader's first write, kept
        assert [t for (t,) in db.execute("SELECT token FROM tokens ORDER BY rowid")] == [3, 5]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE tokens SET token = 1")


def test_a_writer_without_a_token_writes_as_before(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path, token=fixed(9)).begin(two_step_plan())
    lone = Journal(path)
    run_id = lone.begin(two_step_plan())
    lone.ended(run_id, "ok")
    assert lone.run(run_id).finished and lone.newest_token() == 9
    assert Journal(tmp_path / "never-written.sqlite").newest_token() is None


# -- the executor ---------------------------------------------------------------------------


def probe_plan() -> Plan:
    return Plan("switchover", "aws", "hetzner", (
        Step(PROBE, "a step that meets the new leader", {}, 5, retry=True),))


def test_a_step_refused_as_deposed_is_not_retried_and_stops_the_run(
        deployment: FakeDeployment, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int | None] = []

    def refused(ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.deployment.fencing_token())
        raise StaleToken(6, 7, "the agent of aws")

    monkeypatch.setitem(ACTIONS, PROBE, refused)
    deployment.use_token(fixed(6))
    with pytest.raises(StaleToken, match="token 6 is older than 7"):
        execute(deployment, probe_plan())
    assert calls == [6]  # once: a retried step, but a deposed leader is not a blink
    run = deployment.journal.last()
    assert run is not None and run.outcome == "failed"  # written: the journal knew no newer
    assert run.steps()[0].error is not None and "token 6 is older" in run.steps()[0].error


def test_a_deposed_leaders_late_step_result_does_not_land(
        deployment: FakeDeployment, monkeypatch: pytest.MonkeyPatch) -> None:
    path = deployment.config.journal

    def outlived(ctx: StepContext) -> dict[str, Any]:
        run = Journal(path).last()  # meanwhile a new leader takes the run over
        assert run is not None
        Journal(path, token=fixed(8)).resumed(run.id)
        return {"done": "late"}

    monkeypatch.setitem(ACTIONS, PROBE, outlived)
    deployment.use_token(fixed(7))
    with pytest.raises(StaleToken, match="token 7 is older than 8"):
        execute(deployment, probe_plan())
    run = deployment.journal.last()
    assert run is not None and run.outcome == "interrupted"  # the new leader's resume, last
    assert run.steps()[0].outcome is None  # the deposed leader's "ok" never landed


def test_the_deployments_clients_carry_the_token_set_after_they_were_made(
        deployment: FakeDeployment) -> None:
    agent = deployment.agent("aws")
    assert agent is not None and agent.token() is None
    deployment.use_token(fixed(12))
    assert agent.token() == 12 and deployment.fencing_token() == 12
    deployment.journal.begin(two_step_plan())
    assert deployment.journal.newest_token() == 12
