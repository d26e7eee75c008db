"""Drill reports: the summary, the Markdown, the timeline image and aggregates of repeated runs."""

from __future__ import annotations

import copy
import json
import os
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

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def a_report(**changes: Any) -> dict[str, Any]:
    """A switchover drill as the runner reports it: 10 s before the fault, 40 s after."""
    bins = 50
    writes = [18] * 10 + [18, 4, 0, 0, 0, 0, 0, 9, 18, 18] + [18] * 30
    reads = [12] * 10 + [12, 6, 0, 0, 0, 0, 2, 12, 12, 12] + [12] * 30
    timeouts = [0] * 11 + [1, 1, 1] + [0] * 36
    read_only = [0] * 12 + [2, 2, 1] + [0] * 35
    report: dict[str, Any] = {
        "scenario": "termination-notice",
        "started": "2026-11-23T10:00:00+00:00",
        "fault_at": "2026-11-23T10:00:12+00:00",
        "deployment": "/srv/failover/failover.yaml",
        "from_site": "aws",
        "to_site": "hetzner",
        "objectives": {"rto_seconds": 15.0, "rpo_writes": 0},
        "verdicts": [
            {"objective": "rto_seconds", "limit": 15.0, "measured": 7.12, "met": True},
            {"objective": "rpo_writes", "limit": 0, "measured": 0, "met": True},
            {"objective": "run", "limit": "ok", "measured": "ok", "met": True},
        ],
        "objectives_met": True,
        "rto_seconds": 7.12,
        "write_unavailable_seconds": 5.4,
        "longest_write_outage_seconds": 5.4,
        "detection_seconds": 0.0,
        "dns_switch_seconds": 6.5,
        "acked_writes": 1234,
        "lost_writes": 0,
        "lost_write_ids": [],
        "acked_media": 20,
        "lost_media": 0,
        "requests": 2500,
        "errors_by_cause": {"timeout": 3, "read-only": 5},
        "workload": {"rate": 30.0, "users": 4, "write_share": 0.6, "media_share": 0.1},
        "run": {"id": "r-abc", "kind": "switchover", "outcome": "ok",
                "warnings": ["route53: change C123 still PENDING after 30 s"]},
        "steps": [
            {"index": 0, "action": "check_switchover", "title": "Check both sites",
             "started": 0.05, "ended": 0.12, "seconds": 0.07, "outcome": "ok"},
            {"index": 1, "action": "fence_primary", "title": "Make aws read-only",
             "started": 0.12, "ended": 0.4, "seconds": 0.28, "outcome": "ok"},
            {"index": 2, "action": "wait_replay", "title": "Wait for hetzner to catch up",
             "started": 0.4, "ended": 1.9, "seconds": 1.5, "outcome": "ok"},
            {"index": 3, "action": "promote", "title": "Promote hetzner",
             "started": 1.9, "ended": 2.6, "seconds": 0.7, "outcome": "ok"},
            {"index": 4, "action": "switch_dns", "title": "Point the name at hetzner",
             "started": 2.6, "ended": 7.0, "seconds": 4.4, "outcome": "ok"},
        ],
        "timeline": [
            {"at": 7.0, "source": "engine", "event": "switch_dns ok"},
            {"at": 0.0, "source": "drill", "event": "termination notice: aws ends service at +60s"},
            {"at": 7.12, "source": "workload", "event": "first write acknowledged by hetzner"},
        ],
        "series": {"bin_seconds": 1.0, "start": -10.0, "ok_writes": writes, "ok_reads": reads,
                   "errors": {"timeout": timeouts, "read-only": read_only}},
        "failback": {"done": True, "seconds": 25.3, "detail": "switchover hetzner -> aws ok"},
        "notes": ["the notice gave 60 s; the engine finished in 7 s"],
    }
    assert all(len(a) == bins for a in (writes, reads, timeouts, read_only))
    report.update(changes)
    return report


def missed_rto() -> dict[str, Any]:
    report = a_report(rto_seconds=21.5, objectives_met=False)
    report["verdicts"][0].update(measured=21.5, met=False)
    return report


# -- summary -----------------------------------------------------------------------------------


def test_summary_passes_and_shows_the_figures() -> None:
    summary = render_summary(a_report())
    lines = summary.splitlines()
    assert "PASS" in lines[1] and "FAIL" not in summary
    assert "termination-notice" in lines[0] and "aws -> hetzner" in lines[0]
    for text in ("RTO 7.1 s", "7.1 s", "(limit 15.0 s)", "unavailable 5.4 s", "detection 0.0 s",
                 "DNS switch 6.5 s", "1234 acked, 0 lost", "20 acked", "read-only 5, timeout 3",
                 "switchover r-abc: ok", "route53: change C123", "done in 25.3 s"):
        assert text in summary, text
    assert len(lines) <= 25 and max(map(len, lines)) <= 100


def test_summary_fails_on_an_unmet_verdict() -> None:
    summary = render_summary(missed_rto())
    assert summary.splitlines()[1].startswith("FAIL: rto_seconds")
    assert "MISSED" in summary and "21.5 s" in summary and "PASS" not in summary


def test_an_unmet_verdict_fails_even_if_the_flag_says_met() -> None:
    report = missed_rto()
    report["objectives_met"] = True
    assert "FAIL" in render_summary(report) and "FAIL" in render_markdown(report, None)


def test_none_figures_render_as_a_dash() -> None:
    report = a_report(rto_seconds=None, detection_seconds=None, dns_switch_seconds=None,
                      write_unavailable_seconds=None, longest_write_outage_seconds=None,
                      lost_media=None, requests=None, run=None, failback=None)
    report["verdicts"][0].update(measured=None, met=False)
    summary = render_summary(report)
    assert "RTO -" in summary and "detection -" in summary and "DNS switch -" in summary
    assert "unavailable - (longest -)" in summary and "failback: -" in summary
    assert "FAIL" in summary
    assert "| RTO (first acknowledged write at the new primary) | - |" in render_markdown(
        report, None)


def test_a_bare_report_still_renders() -> None:
    report: dict[str, Any] = {"scenario": "provider-blackout"}
    assert "FAIL" in render_summary(report)
    assert "The engine ran no steps." in render_markdown(report, None)


def test_long_warnings_are_cut_to_three_and_the_width() -> None:
    report = a_report()
    report["run"]["warnings"] = [f"warning {n}: " + "x" * 200 for n in range(7)]
    report["lost_write_ids"] = [f"id-{n}" for n in range(9)]
    paths = {"json": Path("/tmp/drills/1/report.json"), "markdown": Path("/tmp/drills/1/report.md")}
    lines = render_summary(report, paths).splitlines()
    assert sum("warning " in line for line in lines) == 3
    assert "  and 4 more warnings" in lines
    assert "  lost: id-0, id-1, id-2 and 6 more" in lines
    assert " json: /tmp/drills/1/report.json" in "\n".join(lines)
    assert len(lines) <= 25 and max(map(len, lines)) <= 100


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
    report["steps"][0]["outcome"] = "failed | retried"
    md = render_markdown(report, None)
    assert "![" not in md and "failed \\| retried" in md


def test_markdown_shows_what_a_step_ended_with() -> None:
    report = a_report()
    report["steps"][3].update(outcome="failed", error="pg_promote() timed out")
    report["steps"].append({"index": 5, "action": "cleanup", "started": None, "ended": None,
                            "seconds": None, "outcome": "not run", "error": None})
    md = render_markdown(report, None)
    assert "Step 3 `promote` ended with: pg_promote() timed out" in md
    assert "| 5 | `cleanup` | - | - | not run |" in md


# -- files -------------------------------------------------------------------------------------


def test_write_reports_writes_json_markdown_and_a_real_png(tmp_path: Path) -> None:
    report = a_report()
    paths = write_reports(report, tmp_path / "drills" / "1")
    assert set(paths) == {"json", "markdown", "png"}
    loaded = json.loads(paths["json"].read_text())
    assert loaded == report and list(loaded) == list(report)
    assert "](timeline.png)" in paths["markdown"].read_text()
    png = paths["png"].read_bytes()
    assert png[:8] == PNG_SIGNATURE and len(png) > 10_000
    umask = os.umask(0o022)
    os.umask(umask)
    assert paths["png"].parent.stat().st_mode & 0o777 == 0o755 & ~umask


def test_the_image_copes_with_missing_data(tmp_path: Path) -> None:
    report = a_report(rto_seconds=None, detection_seconds=None, series=None)
    report["steps"].append({"index": 5, "action": "cleanup", "started": 8.0, "ended": None,
                            "seconds": None, "outcome": None})
    render_timeline_png(report, tmp_path / "a.png")
    render_timeline_png({"scenario": "dns-provider-loss"}, tmp_path / "b.png")
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


# -- aggregates --------------------------------------------------------------------------------


def runs(rtos: list[float | None], **figures: list[Any]) -> list[dict[str, Any]]:
    reports = []
    for n, rto in enumerate(rtos):
        report = a_report(rto_seconds=rto) if rto is not None and rto <= 15 else missed_rto()
        report["rto_seconds"] = rto
        for key, values in figures.items():
            report[key] = values[n]
        reports.append(report)
    return reports


def test_aggregate_with_an_odd_count() -> None:
    agg = aggregate(runs([7.0, 9.0, 8.0], lost_writes=[0, 3, 1], acked_writes=[1200, 900, 1100]))
    assert agg["scenario"] == "termination-notice" and agg["repeat"] == 3
    assert agg["figures"]["rto_seconds"] == {"median": 8.0, "worst": 9.0,
                                             "values": [7.0, 9.0, 8.0]}
    assert agg["figures"]["lost_writes"]["median"] == 1 and agg["figures"]["lost_writes"][
        "worst"] == 3
    assert agg["figures"]["acked_writes"]["worst"] == 900  # fewer acknowledged is worse
    assert agg["objectives_met"] is True and agg["runs_failed"] == 0


def test_aggregate_with_an_even_count() -> None:
    agg = aggregate(runs([7.0, 9.0, 8.0, 20.0], lost_writes=[0, 1, 2, 5]))
    assert agg["figures"]["lost_writes"]["median"] == 1.5
    assert agg["figures"]["rto_seconds"]["median"] == 8.5
    assert agg["figures"]["rto_seconds"]["worst"] == 20.0
    assert agg["objectives_met"] is False and agg["runs_failed"] == 1
    assert agg["met_by_run"] == [True, True, True, False]


def test_a_run_that_never_recovered_is_the_worst() -> None:
    agg = aggregate(runs([7.0, None, 8.0, 9.0, 6.0]))
    rto = agg["figures"]["rto_seconds"]
    assert rto["worst"] is None and rto["values"][1] is None
    assert rto["median"] == 8.0  # None counts as infinitely long, not as left out
    assert agg["runs_failed"] == 1


def test_the_median_rto_is_none_unless_most_runs_recovered() -> None:
    assert aggregate(runs([7.0, None, None]))["figures"]["rto_seconds"]["median"] is None
    assert aggregate(runs([7.0, 8.0, None, None]))["figures"]["rto_seconds"]["median"] is None
    assert aggregate(runs([7.0, 8.0, 9.0, None]))["figures"]["rto_seconds"]["median"] == 8.5


def test_other_none_figures_are_left_out() -> None:
    agg = aggregate(runs([7.0, 8.0, 9.0], detection_seconds=[None, 1.0, 3.0],
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
    rows = {line[:24].strip(): line[24:].split() for line in text.splitlines()[3:11]}
    assert rows["lost writes"] == ["0", "3"] and rows["acked writes"] == ["1100", "0"]
    md = render_aggregate_markdown(agg, [f"run-{n}" for n in range(1, 6)] + ["extra dir"])
    assert "4/5 runs met the objectives." in md
    assert "1. [run-1](run-1/report.md) — PASS" in md
    assert "2. [run-2](run-2/report.md) — FAIL" in md
    assert "6. [extra dir](<extra dir/report.md>) — ?" in md
    assert "| RTO | 8.00 s | - | 7.00 s, -, 8.00 s, 9.00 s, 6.00 s |" in md
    assert "| lost writes | 0 | 3 | 0, 0, 2, 3, 0 |" in md


def test_aggregating_does_not_change_the_reports() -> None:
    reports = runs([7.0, None, 8.0])
    before = copy.deepcopy(reports)
    aggregate(reports)
    assert reports == before
