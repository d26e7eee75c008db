"""Drill reports: the typed report, the summary, the Markdown, the image and aggregates."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from failover.drill.report import (
    aggregate,
    render_aggregate,
    render_aggregate_markdown,
    render_markdown,
    render_summary,
    render_timeline_png,
    write_reports,
)
from failover.drill.results import (
    DrillReport,
    Failback,
    Promise,
    RunSummary,
    Series,
    StepTiming,
    TimelineEvent,
    Verdict,
)
from failover.drill.workload import WorkloadSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What DESIGN.md says a drill's JSON report carries at least.
REQUIRED = ("scenario", "from_site", "to_site", "acked_writes", "lost_writes", "rto_seconds",
            "write_unavailable_seconds", "detection_seconds", "dns_switch_seconds",
            "objectives_met", "timeline")
# Every key of report.json, in order: the shape the typed report must keep.
KEYS = ["scenario", "summary", "started", "fault_at", "deployment", "from_site", "to_site",
        "objectives", "verdicts", "objectives_met", "rto_seconds", "write_unavailable_seconds",
        "longest_write_outage_seconds", "detection_seconds", "dns_switch_seconds",
        "acked_writes", "lost_writes", "lost_write_ids", "acked_posts", "lost_posts",
        "acked_media", "lost_media", "split_brain_writes", "split_brain_write_ids", "requests",
        "errors_by_cause", "workload", "run", "steps", "timeline", "series", "notes", "failback"]
RTO_MET = Verdict("rto_seconds", 15.0, 7.12, met=True)
RPO_MET = Verdict("rpo_writes", 0, 0, met=True)
RUN_OK = Verdict("run", "ok", "ok", met=True)


def step(index: int, action: str, started: float | None, seconds: float | None,
         outcome: str = "ok", error: str | None = None) -> StepTiming:
    ended = None if started is None or seconds is None else round(started + seconds, 3)
    return StepTiming(index, action, action.replace("_", " "), started, ended, seconds,
                      outcome, error)


def a_report(**changes: Any) -> DrillReport:
    """A switchover drill as the runner reports it: 10 s before the fault, 40 s after."""
    bins = 50
    writes = (18,) * 10 + (18, 4, 0, 0, 0, 0, 0, 9, 18, 18) + (18,) * 30
    reads = (12,) * 10 + (12, 6, 0, 0, 0, 0, 2, 12, 12, 12) + (12,) * 30
    timeouts = (0,) * 11 + (1, 1, 1) + (0,) * 36
    read_only = (0,) * 12 + (2, 2, 1) + (0,) * 35
    assert all(len(a) == bins for a in (writes, reads, timeouts, read_only))
    report = DrillReport(
        scenario="termination-notice",
        summary="the provider announces the end of service at a deadline",
        started="2026-11-23T10:00:00+00:00",
        fault_at="2026-11-23T10:00:12+00:00",
        deployment="/srv/failover/failover.yaml",
        from_site="aws",
        to_site="hetzner",
        objectives=Promise(rto_seconds=15.0, rpo_writes=0),
        verdicts=(RTO_MET, RPO_MET, RUN_OK),
        rto_seconds=7.12,
        write_unavailable_seconds=5.4,
        longest_write_outage_seconds=5.4,
        detection_seconds=0.0,
        dns_switch_seconds=6.5,
        acked_writes=1234,
        lost_writes=0,
        lost_write_ids=(),
        acked_posts=1214,
        lost_posts=0,
        acked_media=20,
        lost_media=0,
        split_brain_writes=0,
        split_brain_write_ids=(),
        requests=2500,
        errors_by_cause={"read-only": 5, "timeout": 3},
        workload=WorkloadSpec(rate=30.0, users=4, write_share=0.6, media_share=0.1),
        run=RunSummary("r-abc", "switchover", "ok",
                       warnings=("route53: change C123 still PENDING after 30 s",)),
        steps=(
            step(0, "check_switchover", 0.05, 0.07),
            step(1, "fence_primary", 0.12, 0.28),
            step(2, "wait_replay", 0.4, 1.5),
            step(3, "promote", 1.9, 0.7),
            step(4, "switch_dns", 2.6, 4.4),
        ),
        timeline=(
            TimelineEvent(7.0, "engine", "switch_dns ok"),
            TimelineEvent(0.0, "drill", "termination notice: aws ends service at +60s"),
            TimelineEvent(7.12, "workload", "first write acknowledged by hetzner"),
        ),
        series=Series(1.0, -10.0, writes, reads, {"timeout": timeouts, "read-only": read_only}),
        notes=("the notice gave 60 s; the engine finished in 7 s",),
        failback=Failback(True, 25.3, "switchover hetzner -> aws ok"),
    )
    return replace(report, **changes)


def missed_rto(report: DrillReport | None = None) -> DrillReport:
    return replace(report or a_report(), rto_seconds=21.5,
                   verdicts=(replace(RTO_MET, measured=21.5, met=False), RPO_MET, RUN_OK))


def with_warnings(report: DrillReport, warnings: list[str]) -> DrillReport:
    assert report.run is not None
    return replace(report, run=replace(report.run, warnings=tuple(warnings)))


# -- the typed report --------------------------------------------------------------------------


def test_the_report_serialises_to_the_same_keys_in_the_same_order() -> None:
    data = a_report().to_dict()
    assert list(data) == KEYS and set(REQUIRED) <= set(data)
    assert data["objectives"] == {"rto_seconds": 15.0, "rpo_writes": 0}
    assert data["verdicts"][0] == {"objective": "rto_seconds", "limit": 15.0,
                                   "measured": 7.12, "met": True}
    assert data["objectives_met"] is True
    assert data["workload"] == {"rate": 30.0, "users": 4, "write_share": 0.6,
                                "media_share": 0.1, "media_bytes": 8192, "timeout": 2.0}
    assert data["run"] == {"id": "r-abc", "kind": "switchover", "outcome": "ok",
                           "warnings": ["route53: change C123 still PENDING after 30 s"],
                           "notes": []}
    assert list(data["steps"][0]) == ["index", "action", "title", "started", "ended",
                                      "seconds", "outcome", "error"]
    assert data["timeline"][1] == {"at": 0.0, "source": "drill",
                                   "event": "termination notice: aws ends service at +60s"}
    assert list(data["series"]) == ["bin_seconds", "start", "ok_writes", "ok_reads", "errors"]
    assert isinstance(data["series"]["errors"]["timeout"], list)
    assert data["failback"] == {"done": True, "seconds": 25.3,
                                "detail": "switchover hetzner -> aws ok", "steps": []}
    assert json.loads(json.dumps(data)) == data  # lists, not tuples: it reads back equal


def test_objectives_met_follows_the_verdicts() -> None:
    assert a_report().objectives_met
    assert not missed_rto().objectives_met
    assert missed_rto().to_dict()["objectives_met"] is False
    assert not a_report(verdicts=()).objectives_met  # nothing judged is not a pass


def test_a_report_before_the_fail_back_has_none() -> None:
    assert a_report(failback=None).to_dict()["failback"] is None


# -- summary -----------------------------------------------------------------------------------


def test_summary_passes_and_shows_the_figures() -> None:
    summary = render_summary(a_report())
    lines = summary.splitlines()
    assert "PASS" in lines[1] and "FAIL" not in summary
    assert "termination-notice" in lines[0] and "aws -> hetzner" in lines[0]
    for text in ("RTO 7.1 s", "7.1 s", "(limit 15.0 s)", "unavailable 5.4 s", "detection 0.0 s",
                 "DNS switch 6.5 s", "1234 acked, 0 lost", "20 acked", "split-brain writes: 0",
                 "read-only 5, timeout 3",
                 "switchover r-abc: ok", "route53: change C123", "done in 25.3 s"):
        assert text in summary, text
    assert len(lines) <= 25 and max(map(len, lines)) <= 100


def test_summary_fails_on_an_unmet_verdict() -> None:
    summary = render_summary(missed_rto())
    assert summary.splitlines()[1].startswith("FAIL: rto_seconds")
    assert "MISSED" in summary and "21.5 s" in summary and "PASS" not in summary


def test_a_missed_objective_of_the_scenario_fails_the_drill() -> None:
    late = Verdict("move_finished_seconds", 20.0, 31.5, met=False)
    report = a_report(verdicts=(RTO_MET, RPO_MET, RUN_OK, late))
    summary = render_summary(report)
    assert summary.splitlines()[1] == "FAIL: move_finished_seconds"
    assert "MISSED  move_finished_seconds     31.5 s  (limit 20.0 s)" in summary
    assert "| move_finished_seconds | 20.00 s | 31.50 s | **no** |" in render_markdown(
        report, None)


def test_none_figures_render_as_a_dash() -> None:
    report = a_report(rto_seconds=None, detection_seconds=None, dns_switch_seconds=None,
                      run=None, failback=None,
                      verdicts=(replace(RTO_MET, measured=None, met=False), RPO_MET))
    summary = render_summary(report)
    assert "RTO -" in summary and "detection -" in summary and "DNS switch -" in summary
    assert "engine: no engine run" in summary and "failback: -" in summary
    assert "FAIL" in summary
    assert "| RTO (first acknowledged write at the new primary) | - |" in render_markdown(
        report, None)


def test_a_drill_that_judged_and_ran_nothing_still_renders() -> None:
    report = a_report(scenario="provider-blackout", verdicts=(), run=None, steps=(),
                      timeline=(), series=None, notes=(), failback=None)
    assert "FAIL: objectives not met" in render_summary(report)
    md = render_markdown(report, None)
    assert "The engine ran no steps." in md and "No events." in md


def test_long_warnings_are_cut_to_three_and_the_width() -> None:
    report = with_warnings(a_report(), [f"warning {n}: " + "x" * 200 for n in range(7)])
    report = replace(report, lost_write_ids=tuple(f"id-{n}" for n in range(9)))
    paths = {"json": Path("/tmp/drills/1/report.json"), "markdown": Path("/tmp/drills/1/report.md")}
    lines = render_summary(report, paths).splitlines()
    assert sum("warning " in line for line in lines) == 3
    assert "  and 4 more warnings" in lines
    assert "  lost: id-0, id-1, id-2 and 6 more" in lines
    assert " json: /tmp/drills/1/report.json" in "\n".join(lines)
    assert len(lines) <= 25 and max(map(len, lines)) <= 100


def test_split_brain_writes_are_counted_and_named() -> None:
    ids = tuple(f"sb-{n}" for n in range(5))
    report = a_report(split_brain_writes=5, split_brain_write_ids=ids)
    lines = render_summary(report).splitlines()
    assert any(line.endswith("split-brain writes: 5") for line in lines)
    assert "  split brain: sb-0, sb-1, sb-2 and 2 more" in lines
    md = render_markdown(report, None)
    assert ("| Split-brain writes (acknowledged by the old primary after the promotion) | 5 |"
            in md)
    assert "Split-brain write ids: `sb-0`, `sb-1`, `sb-2`, `sb-3`, `sb-4`" in md
    assert report.to_dict()["split_brain_write_ids"] == list(ids)
    assert "Split-brain write ids" not in render_markdown(a_report(), None)


# -- Markdown ----------------------------------------------------------------------------------


def test_markdown_has_the_tables_timeline_and_image() -> None:
    md = render_markdown(a_report(), "timeline.png")
    assert md.startswith("# Drill termination-notice: aws → hetzner — PASS\n")
    assert "| rto_seconds | 15.00 s | 7.12 s | yes |" in md
    assert "| 0 | `check_switchover` | +0.05 s | 0.07 | ok |" in md
    assert "| 4 | `switch_dns` | +2.60 s | 4.40 | ok |" in md
    assert "![Traffic, errors and engine steps around the fault](timeline.png)" in md
    assert "- route53: change C123 still PENDING after 30 s" in md
    assert "- the notice gave 60 s; the engine finished in 7 s" in md
    assert "| Write share | 60% |" in md
    timeline = [line for line in md.splitlines() if line.startswith("- `")]
    assert timeline[0] == "- `+0.0 s` drill: termination notice: aws ends service at +60s"
    assert timeline[-1].endswith("first write acknowledged by hetzner")


def test_markdown_without_an_image_and_with_pipes() -> None:
    report = a_report()
    report = replace(report, steps=(replace(report.steps[0], outcome="failed | retried"),
                                    *report.steps[1:]))
    md = render_markdown(report, None)
    assert "![" not in md and "failed \\| retried" in md


def test_markdown_shows_what_a_step_ended_with() -> None:
    report = a_report()
    steps = list(report.steps)
    steps[3] = replace(steps[3], outcome="failed", error="pg_promote() timed out")
    steps.append(step(5, "cleanup", None, None, outcome="not run"))
    md = render_markdown(replace(report, steps=tuple(steps)), None)
    assert "Step 3 `promote` ended with: pg_promote() timed out" in md
    assert "| 5 | `cleanup` | - | - | not run |" in md


# -- files -------------------------------------------------------------------------------------


def test_write_reports_writes_json_markdown_and_a_real_png(tmp_path: Path) -> None:
    report = a_report()
    paths = write_reports(report, tmp_path / "drills" / "1")
    assert set(paths) == {"json", "markdown", "png"}
    loaded = json.loads(paths["json"].read_text())
    assert loaded == report.to_dict() and list(loaded) == KEYS
    assert "](timeline.png)" in paths["markdown"].read_text()
    png = paths["png"].read_bytes()
    assert png[:8] == PNG_SIGNATURE and len(png) > 10_000
    umask = os.umask(0o022)
    os.umask(umask)
    assert paths["png"].parent.stat().st_mode & 0o777 == 0o755 & ~umask


def test_the_image_copes_with_missing_data(tmp_path: Path) -> None:
    report = a_report(rto_seconds=None, detection_seconds=None, series=None)
    unfinished = replace(step(5, "cleanup", 8.0, None), outcome="running")
    render_timeline_png(replace(report, steps=(*report.steps, unfinished)), tmp_path / "a.png")
    render_timeline_png(a_report(scenario="dns-provider-loss", steps=(), series=None, run=None,
                                 verdicts=()), tmp_path / "b.png")
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


# -- aggregates --------------------------------------------------------------------------------


def runs(rtos: list[float | None], **figures: list[Any]) -> list[DrillReport]:
    reports = []
    for n, rto in enumerate(rtos):
        report = a_report() if rto is not None and rto <= 15 else missed_rto()
        reports.append(replace(report, rto_seconds=rto,
                               **{key: values[n] for key, values in figures.items()}))
    return reports


def summary_json(reports: list[DrillReport]) -> dict[str, Any]:
    """The aggregate as summary.json holds it (without the runs)."""
    data: dict[str, Any] = json.loads(json.dumps(aggregate(reports).to_dict()))
    return data


def test_aggregate_with_an_odd_count() -> None:
    agg = summary_json(runs([7.0, 9.0, 8.0], lost_writes=[0, 3, 1],
                            acked_writes=[1200, 900, 1100]))
    assert list(agg) == ["scenario", "repeat", "figures", "objectives_met", "runs_failed",
                         "met_by_run"]
    assert agg["scenario"] == "termination-notice" and agg["repeat"] == 3
    assert agg["figures"]["rto_seconds"] == {"median": 8.0, "worst": 9.0,
                                             "values": [7.0, 9.0, 8.0]}
    assert agg["figures"]["lost_writes"]["median"] == 1 and agg["figures"]["lost_writes"][
        "worst"] == 3
    assert agg["figures"]["acked_writes"]["worst"] == 900  # fewer acknowledged is worse
    assert agg["figures"]["split_brain_writes"]["worst"] == 0
    assert agg["objectives_met"] is True and agg["runs_failed"] == 0


def test_aggregate_with_an_even_count() -> None:
    agg = aggregate(runs([7.0, 9.0, 8.0, 20.0], lost_writes=[0, 1, 2, 5]))
    assert agg.figures["lost_writes"].median == 1.5
    assert agg.figures["rto_seconds"].median == 8.5
    assert agg.figures["rto_seconds"].worst == 20.0
    assert agg.objectives_met is False and agg.runs_failed == 1
    assert agg.met_by_run == (True, True, True, False)
    assert agg.to_dict()["met_by_run"] == [True, True, True, False]
    assert json.loads(json.dumps(agg.to_dict())) == agg.to_dict()  # lists, not tuples


def test_a_run_that_never_recovered_is_the_worst() -> None:
    agg = aggregate(runs([7.0, None, 8.0, 9.0, 6.0]))
    rto = agg.figures["rto_seconds"]
    assert rto.worst is None and rto.values[1] is None
    assert rto.median == 8.0  # None counts as infinitely long, not as left out
    assert agg.runs_failed == 1


def test_the_median_rto_is_none_unless_most_runs_recovered() -> None:
    assert aggregate(runs([7.0, None, None])).figures["rto_seconds"].median is None
    assert aggregate(runs([7.0, 8.0, None, None])).figures["rto_seconds"].median is None
    assert aggregate(runs([7.0, 8.0, 9.0, None])).figures["rto_seconds"].median == 8.5


def test_other_none_figures_are_left_out() -> None:
    agg = summary_json(runs([7.0, 8.0, 9.0], detection_seconds=[None, 1.0, 3.0],
                            dns_switch_seconds=[None, None, None]))
    assert agg["figures"]["detection_seconds"] == {"median": 2.0, "worst": 3.0,
                                                   "values": [None, 1.0, 3.0]}
    assert agg["figures"]["dns_switch_seconds"]["median"] is None


def test_nothing_to_aggregate() -> None:
    with pytest.raises(ValueError, match="no drill reports"):
        aggregate([])


def test_aggregate_renderings() -> None:
    agg = aggregate(runs([7.0, None, 8.0, 9.0, 6.0], lost_writes=[0, 0, 2, 3, 0],
                         acked_writes=[1200, 0, 1100, 1000, 1300]))
    text = render_aggregate(agg)
    assert text.splitlines()[0] == "Drill termination-notice x5: FAIL, 4/5 runs met the objectives"
    rto_line = next(line for line in text.splitlines() if line.startswith("RTO"))
    assert rto_line.split() == ["RTO", "8.0", "s", "-"]
    assert "1 of 5 runs never recovered writes" in text
    rows = {line[:24].strip(): line[24:].split() for line in text.splitlines()[3:12]}
    assert rows["lost writes"] == ["0", "3"] and rows["acked writes"] == ["1100", "0"]
    md = render_aggregate_markdown(agg, [f"run-{n}" for n in range(1, 6)] + ["extra dir"])
    assert "4/5 runs met the objectives." in md
    assert "1. [run-1](run-1/report.md) — PASS" in md
    assert "2. [run-2](run-2/report.md) — FAIL" in md
    assert "6. [extra dir](<extra dir/report.md>) — ?" in md
    assert "| RTO | 8.00 s | - | 7.00 s, -, 8.00 s, 9.00 s, 6.00 s |" in md
    assert "| lost writes | 0 | 3 | 0, 0, 2, 3, 0 |" in md
    assert "| split-brain writes | 0 | 0 | 0, 0, 0, 0, 0 |" in md
