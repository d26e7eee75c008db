"""The drill history: drills begun and ended, listed, charted, exported, and `drill history`."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from failover.cli import cli
from failover.drill.history import DrillHistory, HistoryEntry, HistoryError, history_path
from failover.drill.report.trend import render_history, render_trend_png
from failover.drill.results import DrillReport, Failback, Verdict
from failover.engine.deployment import open_deployment
from failover.watch.metrics import WatchMetrics
from tests.failover.drill.test_report import PNG_SIGNATURE, a_report
from tests.failover.handbuilt import lab_files

FAILED_BACK = Failback(True, 12.5, "switchover hetzner -> aws ok")


def drill_report(at: str, **changes: object) -> DrillReport:
    """The report fixture of test_report, begun at ``at``, failed back unless told."""
    return replace(a_report(), started=at, failback=FAILED_BACK, **changes)  # type: ignore[arg-type]


@pytest.fixture
def history(tmp_path: Path) -> DrillHistory:
    return DrillHistory(tmp_path / "drills.sqlite")


def test_the_history_lives_beside_the_journal_and_only_its_owner_reads_it(
        tmp_path: Path) -> None:
    path = history_path(tmp_path / "state" / "journal.sqlite")
    assert path == tmp_path / "state" / "drills.sqlite"
    DrillHistory(path).entries()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_drill_added_is_listed_with_its_figures(history: DrillHistory) -> None:
    report = drill_report("2026-11-23T10:00:00+00:00")
    added = history.add(report, trigger="cli", report_dir=Path("/r/1"))
    [entry] = history.entries()
    assert entry == added
    assert entry.scenario == report.scenario == "termination-notice"
    assert entry.started == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert (entry.trigger, entry.passed, entry.aborted, entry.failed_back) == (
        "cli", report.objectives_met, None, True)
    assert entry.passed
    assert (entry.rto_seconds, entry.write_unavailable_seconds) == (
        report.rto_seconds, report.write_unavailable_seconds)
    assert (entry.lost_writes, entry.acked_writes) == (report.lost_writes, report.acked_writes)
    assert entry.report_dir == "/r/1"
    assert [v["objective"] for v in entry.verdicts] == [v.objective for v in report.verdicts]
    assert entry.outcome == "passed"


def test_an_aborted_or_missed_drill_has_not_passed(history: DrillHistory) -> None:
    aborted = history.add(drill_report("2026-11-23T10:00:00+00:00"), trigger="schedule",
                          aborted="error rate 3.0% passed the limit of 0.0%")
    missed = history.add(
        drill_report("2026-11-23T11:00:00+00:00",
                     verdicts=(Verdict("rto_seconds", 15.0, 40.0, met=False),)),
        trigger="schedule")
    assert (aborted.passed, aborted.outcome) == (False, "aborted")
    assert (missed.passed, missed.outcome) == (False, "failed")


def test_entries_are_oldest_first_and_since_leaves_older_ones_out(
        history: DrillHistory) -> None:
    for hour in (12, 9, 10):  # added out of order: listed by when they began
        history.add(drill_report(f"2026-11-23T{hour:02}:00:00+00:00"), trigger="cli")
    assert [e.started.hour for e in history.entries()] == [9, 10, 12]
    since = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert [e.started.hour for e in history.entries(since)] == [10, 12]
    assert [e.started.hour for e in history.entries(since.replace(tzinfo=None))] == [10, 12]


def test_a_drill_begun_is_under_way_until_it_ends(history: DrillHistory) -> None:
    begun = history.begin("provider-blackout", trigger="schedule", from_site="aws",
                          standby_site="hetzner", to_site="hetzner")
    [running] = history.under_way()
    assert (running.id, running.scenario, running.from_site, running.to_site) == (
        begun, "provider-blackout", "aws", "hetzner")
    assert running.owner_pid == os.getpid() and running.owner_alive
    assert history.entries() == []
    entry = history.add(drill_report("2026-11-23T10:00:00+00:00", scenario="provider-blackout"),
                        trigger="schedule", begun=begun)
    assert entry.id == begun
    assert history.under_way() == []
    assert [e.id for e in history.entries()] == [begun]
    with pytest.raises(HistoryError, match=f"no drill {begun} is under way"):
        history.add(drill_report("2026-11-23T10:00:00+00:00"), trigger="cli", begun=begun)


def test_a_drill_that_broke_is_kept_without_figures(history: DrillHistory) -> None:
    begun = history.begin("termination-notice", trigger="cli", from_site="aws",
                          standby_site="hetzner", to_site="hetzner")
    entry = history.fail(begun, error="StepFailed: promote failed", failed_back=True)
    assert (entry.outcome, entry.passed, entry.rto_seconds, entry.failed_back) == (
        "error", False, None, True)
    assert history.entries() == [entry]
    assert "StepFailed: promote failed" in render_history([entry])


def test_a_drill_whose_owner_died_is_not_alive(history: DrillHistory) -> None:
    history.begin("termination-notice", trigger="schedule", from_site="aws",
                  standby_site="hetzner", to_site="hetzner")
    with history._db() as db:  # as a controller that died left it: a PID that runs no more
        db.execute("UPDATE drills SET owner_ticks = owner_ticks + 1")
    assert not history.under_way()[0].owner_alive


def test_an_unknown_trigger_is_refused(history: DrillHistory) -> None:
    with pytest.raises(HistoryError, match="unknown drill trigger 'cron'"):
        history.add(drill_report("2026-11-23T10:00:00+00:00"), trigger="cron")


def test_an_entry_reads_back_from_its_dict(history: DrillHistory) -> None:
    entry = history.add(drill_report("2026-11-23T10:00:00+00:00"), trigger="chaostoolkit")
    data = json.loads(json.dumps(entry.to_dict()))
    assert data["started"] == "2026-11-23T10:00:00+00:00"
    assert data["outcome"] == "passed"
    assert HistoryEntry.from_dict(data) == entry


def test_the_trend_chart_is_a_png(history: DrillHistory, tmp_path: Path) -> None:
    history.add(drill_report("2026-11-23T10:00:00+00:00"), trigger="cli")
    begun = history.begin("termination-notice", trigger="cli", from_site="aws",
                          standby_site="hetzner", to_site="hetzner")
    history.fail(begun, error="broke", failed_back=False)
    history.add(drill_report("2026-11-23T12:00:00+00:00", rto_seconds=None), trigger="cli",
                aborted="too many errors")
    chart = tmp_path / "trend.png"
    render_trend_png(history.entries(), chart)
    assert chart.read_bytes().startswith(PNG_SIGNATURE)


def test_metrics_say_each_scenarios_last_drill_and_count_them(history: DrillHistory) -> None:
    first = history.add(drill_report("2026-11-23T10:00:00+00:00"), trigger="schedule")
    history.add(drill_report("2026-11-23T11:00:00+00:00", rto_seconds=9.5, lost_writes=2),
                trigger="schedule", aborted="error rate passed the limit")
    metrics = WatchMetrics()
    metrics.drills_from(history)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics.text().decode())
               for s in family.samples}
    notice = (("scenario", "termination-notice"),)
    assert first.ended is not None
    assert samples[("failover_drill_last_success_timestamp_seconds", notice)] == \
        first.ended.timestamp()
    assert samples[("failover_drill_rto_seconds", notice)] == 9.5
    assert samples[("failover_drill_lost_writes", notice)] == 2
    assert samples[("failover_drill_write_unavailable_seconds", notice)] == \
        a_report().write_unavailable_seconds
    for outcome in ("passed", "aborted"):
        assert samples[("failover_drills_total", (("outcome", outcome), *notice))] == 1


# -- failover drill history ------------------------------------------------------------

def seeded(root: Path) -> DrillHistory:
    """A lab's state dir whose history holds two drills a day apart."""
    history = DrillHistory(history_path(open_deployment(None, root).config.journal))
    history.add(drill_report("2026-11-22T10:00:00+00:00"), trigger="cli",
                report_dir=root / "drills" / "a")
    history.add(drill_report("2026-11-23T10:00:00+00:00"), trigger="schedule",
                aborted="error rate 2.0% over the last 10s passed the limit of 0.0%")
    return history


def test_drill_history_json_lists_the_drills_oldest_first(tmp_path: Path) -> None:
    root = lab_files(tmp_path / "lab")
    history = seeded(root)
    result = CliRunner().invoke(cli, ["drill", "history", "--json", "--state-dir", str(root)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["drills"] == [e.to_dict() for e in history.entries()]
    assert [d["trigger"] for d in data["drills"]] == ["cli", "schedule"]
    assert data["chart"] is None  # JSON alone writes no file
    later = CliRunner().invoke(cli, ["drill", "history", "--json", "--since", "2026-11-23",
                                     "--state-dir", str(root)])
    assert [d["trigger"] for d in json.loads(later.stdout)["drills"]] == ["schedule"]


def test_drill_history_lists_the_drills_and_says_where_the_chart_went(tmp_path: Path) -> None:
    root = lab_files(tmp_path / "lab")
    seeded(root)
    result = CliRunner().invoke(cli, ["drill", "history", "--state-dir", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("2026-11-22 10:00:00 termination-notice")
    assert " passed " in lines[1] and " aborted " in lines[2]
    assert "error rate 2.0% over the last 10s passed the limit" in lines[3]
    chart = root / "drills" / "trend.png"
    assert lines[-1] == f"trend chart: {chart}"
    assert chart.read_bytes().startswith(PNG_SIGNATURE)
    elsewhere = tmp_path / "charts" / "t.png"
    CliRunner().invoke(cli, ["drill", "history", "--json", "--chart", str(elsewhere),
                             "--state-dir", str(root)])
    assert elsewhere.read_bytes().startswith(PNG_SIGNATURE)


def test_drill_history_with_nothing_kept_says_so(tmp_path: Path) -> None:
    root = lab_files(tmp_path / "lab")
    seeded(root)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    result = CliRunner().invoke(cli, ["drill", "history", "--since", tomorrow,
                                      "--state-dir", str(root)])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"no drills kept yet since {tomorrow} 00:00:00")


def test_drill_with_no_subcommand_still_runs_a_drill(tmp_path: Path) -> None:
    root = lab_files(tmp_path / "lab")
    result = CliRunner().invoke(cli, ["drill", "--scenario", "provider-blackout",
                                      "--state-dir", str(root)])
    assert result.exit_code == 2  # CliRunner gives no terminal: --yes is asked for
    assert "would run 1 provider-blackout drill(s)" in result.stderr


def test_metrics_still_answer_when_the_history_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    metrics = WatchMetrics()
    metrics.drills_from(DrillHistory(tmp_path / "not-a-dir" / "drills.sqlite"))
    text = metrics.text().decode()
    assert "failover_cycles_total" in text and "failover_drill" not in text
