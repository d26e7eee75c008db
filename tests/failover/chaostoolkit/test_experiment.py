"""A drill exported as a Chaos Toolkit experiment: valid to chaoslib, its hypothesis the
objectives, and the probes' answers judged by chaoslib's own tolerance check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.hypothesis import within_tolerance
from click.testing import CliRunner

from failover.chaostoolkit import actions, probes, session
from failover.chaostoolkit.experiment import ExportOptions, experiment
from failover.cli import cli
from failover.config import load_config
from failover.drill.history import DrillHistory
from failover.drill.objectives import REBUILD_RTO_SECONDS
from failover.drill.recorded import Recorded
from failover.drill.results import DrillReport, Promise, Verdict
from failover.drill.scenarios import SCENARIOS
from tests.failover.drill.test_report import RPO_MET, RUN_OK, a_report
from tests.failover.handbuilt import lab_files

PROMISE = Promise(rto_seconds=15.0, rpo_writes=3)


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    """A state dir as ``lab up`` leaves it (nothing started)."""
    return lab_files(tmp_path / "lab")


@pytest.fixture(autouse=True)
def no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a fresh ``chaos run`` does: no fault injected yet."""
    monkeypatch.setattr(session, "_current", None)


def export(lab_dir: Path, *args: str) -> Any:
    done = CliRunner().invoke(cli, ["drill", "export", "--state-dir", str(lab_dir), *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def hypothesis(document: dict[str, Any]) -> dict[str, Any]:
    """Probe name -> (function, arguments, tolerance)."""
    return {p["name"]: (p["provider"]["func"], p["provider"]["arguments"], p["tolerance"])
            for p in document["steady-state-hypothesis"]["probes"]}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_exports_an_experiment_chaoslib_finds_valid(scenario: str) -> None:
    document = experiment(SCENARIOS[scenario], PROMISE, ExportOptions(), {})
    # chaoslib imports our modules and checks each activity's arguments against its function.
    ensure_experiment_is_valid(document)
    assert document["runtime"] == {"rollbacks": {"strategy": "always"}}
    (method,) = document["method"]
    assert method["provider"]["func"] == "run_drill"
    assert method["provider"]["arguments"]["scenario"] == scenario
    assert [r["provider"]["func"] for r in document["rollbacks"]] == ["fail_back"]


def test_the_hypothesis_is_the_deployments_objectives_and_the_scenarios_own(
        lab_dir: Path) -> None:
    objectives = load_config(lab_dir / "failover.yaml").objectives
    notice = hypothesis(export(lab_dir, "termination-notice"))
    assert notice["deployment-whole"] == ("deployment_healthy", {"state_dir": str(lab_dir)},
                                          True)
    assert notice["rto_seconds-within-objective"][2] == [0, objectives.rto_seconds]
    assert notice["rpo_writes-within-objective"][2] == [0, 0]  # notice given: none lost
    assert notice["objectives-met"] == ("objectives_met", {}, True)
    blackout = hypothesis(export(lab_dir, "provider-blackout"))
    assert blackout["rpo_writes-within-objective"][2] == [0, objectives.rpo_writes]
    assert blackout["split_brain_writes-within-objective"][2] == [0, 0]
    rebuild = hypothesis(export(lab_dir, "total-loss"))
    assert rebuild["rto_seconds-within-objective"][2] == [0, REBUILD_RTO_SECONDS]
    assert "rpo_writes-within-objective" not in rebuild


def test_the_export_is_stable_and_carries_the_drills_options(lab_dir: Path,
                                                            tmp_path: Path) -> None:
    args = ("db-primary-crash", "--notice", "20", "--settle", "1", "--rate", "20")
    out = tmp_path / "experiment.json"
    first = CliRunner().invoke(cli, ["drill", "export", "--state-dir", str(lab_dir), *args])
    again = CliRunner().invoke(cli, ["drill", "export", "--state-dir", str(lab_dir), *args,
                                     "--out", str(out)])
    assert first.exit_code == 0 and again.exit_code == 0, (first.output, again.output)
    assert out.read_text() == first.output
    arguments = json.loads(first.output)["method"][0]["provider"]["arguments"]
    assert arguments == {"scenario": "db-primary-crash", "notice_seconds": 20.0,
                         "warmup_seconds": 5.0, "settle_seconds": 1.0, "rate": 20.0,
                         "users": 4, "state_dir": str(lab_dir)}


def test_without_a_deployment_named_it_acts_on_the_lab_of_where_it_runs(
        lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILOVER_STATE_DIR", str(lab_dir))
    done = CliRunner().invoke(cli, ["drill", "export", "db-primary-crash"])
    assert done.exit_code == 0, done.output
    document = json.loads(done.output)
    assert hypothesis(document)["deployment-whole"][1] == {}
    assert "state_dir" not in document["method"][0]["provider"]["arguments"]


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-scenario"], "'no-such-scenario' is not one of"),
    (["--format", "litmus", "db-primary-crash"], "'litmus' is not"),
    (["--notice", "1", "termination-notice"], "1.0 is not in the range x>=5"),
])
def test_bad_input_is_one_line_and_writes_nothing(lab_dir: Path, tmp_path: Path,
                                                  args: list[str], message: str) -> None:
    out = tmp_path / "experiment.json"
    done = CliRunner().invoke(cli, ["drill", "export", "--state-dir", str(lab_dir),
                                    "--out", str(out), *args])
    assert done.exit_code == 2 and message in done.output, done.output
    assert not out.exists()


def measured(tmp_path: Path, report: DrillReport) -> None:
    """The method's drill, ended and kept, as run_drill leaves it in the session."""
    entry = DrillHistory(tmp_path / "drills.sqlite").add(report, trigger="chaostoolkit")
    session.begin().recorded = Recorded(report, {}, entry)


def judged(document: dict[str, Any]) -> dict[str, bool]:
    """Each figure and objectives probe answered now, judged by chaoslib's own check."""
    functions = {"figure": probes.figure, "objectives_met": probes.objectives_met}
    return {name: within_tolerance(tolerance, functions[func](**arguments))
            for name, (func, arguments, tolerance) in hypothesis(document).items()
            if func in functions}


def test_before_the_fault_the_objectives_hold_and_there_is_nothing_to_roll_back() -> None:
    document = experiment(SCENARIOS["db-primary-crash"], PROMISE, ExportOptions(), {})
    assert all(judged(document).values()), judged(document)
    assert actions.fail_back() == "no fault was injected in this run: nothing to roll back"


def test_after_the_fault_the_probes_judge_what_the_drill_measured(tmp_path: Path) -> None:
    document = experiment(SCENARIOS["db-primary-crash"], PROMISE, ExportOptions(), {})
    measured(tmp_path, a_report(scenario="db-primary-crash"))
    assert all(judged(document).values()), judged(document)
    assert probes.figure("rto_seconds") == 7.12
    slow = Verdict("rto_seconds", 15.0, 21.5, met=False)
    lost = Verdict("rpo_writes", 3, 4, met=False)
    measured(tmp_path, a_report(scenario="db-primary-crash", rto_seconds=21.5, lost_writes=4,
                                verdicts=(slow, lost, RUN_OK)))
    verdicts = judged(document)
    assert not verdicts["rto_seconds-within-objective"]
    assert not verdicts["rpo_writes-within-objective"]
    assert not verdicts["objectives-met"]


def test_a_drill_that_broke_measured_nothing_and_fails_every_figure(tmp_path: Path) -> None:
    document = experiment(SCENARIOS["provider-blackout"], PROMISE, ExportOptions(), {})
    session.begin().error = "DrillRefused: no standby streams from aws"
    assert not any(judged(document).values()), judged(document)
    # A verdict with no figure (writes never came back) is outside every tolerance too.
    never = Verdict("rto_seconds", 15.0, None, met=False)
    measured(tmp_path, a_report(scenario="provider-blackout", rto_seconds=None,
                                verdicts=(never, RPO_MET, RUN_OK)))
    assert probes.figure("rto_seconds") == probes.NOT_MEASURED
    assert probes.figure("rpo_writes") == 0
    assert not probes.objectives_met()
