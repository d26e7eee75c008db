"""The exit plan's evidence over a seeded history: what is gathered, how it reads, the files."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from failover.cli import cli
from failover.config import FailoverConfig, load_config
from failover.drill.history import DrillHistory, history_path
from failover.drill.results import Verdict
from failover.drill.scenarios import SCENARIOS
from failover.evidence.document import build
from failover.evidence.files import write_evidence
from failover.evidence.gather import Evidence, gather
from failover.evidence.html import render_html
from failover.evidence.markdown import render_markdown
from failover.watch.policy import Move
from failover.watch.store import WatchStore, store_path
from tests.failover.drill.test_report import RPO_MET, RTO_MET, RUN_OK, a_report
from tests.failover.handbuilt import lab_files

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The report is made after what it reports. Hours ahead: approvals are stamped with the real
# time, and a test may run many minutes after this module was imported (CI's lab tests first).
NOW = datetime.now(UTC) + timedelta(hours=6)
SINCE = NOW - timedelta(days=30)
RUNBOOKS = {"switchover.md": "# Switchover\n\n1. Fence the primary.\n",
            "promote.md": "# Promote\n\n1. Promote the standby.\n"}


def iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


@pytest.fixture
def config(tmp_path: Path) -> FailoverConfig:
    """The lab's configuration, written as ``lab up`` leaves it (nothing started)."""
    return load_config(lab_files(tmp_path / "lab") / "failover.yaml")


@pytest.fixture
def runbooks(tmp_path: Path) -> Path:
    directory = tmp_path / "runbooks"
    directory.mkdir()
    for name, text in RUNBOOKS.items():
        (directory / name).write_text(text)
    (directory / "notes.txt").write_text("not a runbook")
    return directory


def seed(config: FailoverConfig) -> None:
    """Four drills: a pass and a failure in the period, one that broke, one long before."""
    history = DrillHistory(history_path(config.journal))
    history.add(a_report(started=iso(NOW - timedelta(days=3))), trigger="cli",
                report_dir=Path("/srv/drills/a"))
    lost = Verdict("rpo_writes", 0, 2, met=False)
    history.add(a_report(scenario="db-primary-crash", started=iso(NOW - timedelta(days=2)),
                         lost_writes=2, rto_seconds=9.5, verdicts=(RTO_MET, lost, RUN_OK)),
                trigger="chaostoolkit")
    begun = history.begin("partition", trigger="schedule", from_site="aws",
                          standby_site="hetzner", to_site="hetzner",
                          started=NOW - timedelta(days=1))
    history.fail(begun, error="DrillRefused: nftables needs root", failed_back=True)
    history.add(a_report(scenario="provider-blackout", started=iso(NOW - timedelta(days=90)),
                         verdicts=(RTO_MET, RPO_MET, RUN_OK)), trigger="cli")


def approve_one(config: FailoverConfig, by: str | None) -> None:
    store = WatchStore(store_path(config.journal))
    stamp = NOW.timestamp() - 3600
    store.save_move(Move("m1", "switchover", "aws", "hetzner", "aws", "termination notice",
                         stamp, stamp, "proposed"))
    store.approve("m1", by=by)


def gathered(config: FailoverConfig, runbooks: Path) -> Evidence:
    return gather(config, "/srv/failover.yaml", since=SINCE, runbooks_dir=runbooks, now=NOW)


def test_the_period_holds_its_drills_and_the_scenarios_not_drilled_are_gaps(
        config: FailoverConfig, runbooks: Path) -> None:
    seed(config)
    evidence = gathered(config, runbooks)
    assert [(d.scenario, d.outcome) for d in evidence.drills] == [
        ("termination-notice", "passed"), ("db-primary-crash", "failed"), ("partition", "error")]
    covered = {c.scenario: (c.drills, c.passed) for c in evidence.coverage}
    assert list(covered) == list(SCENARIOS)
    assert covered["termination-notice"] == (1, 1) and covered["db-primary-crash"] == (1, 0)
    gaps = {c.scenario: c for c in evidence.gaps}
    assert set(gaps) == set(SCENARIOS) - {"termination-notice", "db-primary-crash", "partition"}
    # Drilled before the period only: a gap, with the date it was last drilled.
    last = gaps["provider-blackout"].last_drilled
    assert last is not None and last.date() == (NOW - timedelta(days=90)).date()
    assert gaps["total-loss"].last_drilled is None


def test_sites_objectives_runbooks_and_who_approved_come_from_what_the_tool_keeps(
        config: FailoverConfig, runbooks: Path) -> None:
    approve_one(config, by="alice")
    evidence = gathered(config, runbooks)
    assert {(s.name, s.provider, s.spare) for s in evidence.sites} == {
        (name, site.provider, False) for name, site in config.sites.items()} | {
        (name, site.provider, True) for name, site in config.spares.items()}
    assert (evidence.rto_seconds, evidence.rpo_writes) == (
        config.objectives.rto_seconds, config.objectives.rpo_writes)
    assert {r.name: r.sha256 for r in evidence.runbooks} == {
        name: hashlib.sha256(text.encode()).hexdigest() for name, text in RUNBOOKS.items()}
    (approval,) = evidence.approvals
    assert (approval.move_id, approval.approved_by, approval.state) == ("m1", "alice",
                                                                         "approved")
    assert evidence.drills == ()


def test_nothing_recorded_yet_is_an_empty_record_and_reading_creates_no_file(
        config: FailoverConfig, tmp_path: Path) -> None:
    evidence = gathered(config, tmp_path / "no-runbooks")
    assert evidence.drills == () and evidence.approvals == () and evidence.runbooks == ()
    assert len(evidence.gaps) == len(SCENARIOS)
    assert not history_path(config.journal).exists()
    assert not store_path(config.journal).exists()
    text = render_markdown(build(evidence, "chart.png"))
    assert "No drill was recorded in the period." in text
    assert "No move was approved by hand" in text and "No runbook was found" in text


def test_the_markdown_is_dated_and_names_every_part(config: FailoverConfig,
                                                    runbooks: Path) -> None:
    seed(config)
    approve_one(config, by="alice")
    text = render_markdown(build(gathered(config, runbooks), "chart.png"))
    title = text.splitlines()[0]
    assert title == (f"# Exit-plan evidence of {NOW:%Y-%m-%d}: {SINCE:%Y-%m-%d} to "
                     f"{NOW:%Y-%m-%d}")
    assert "![Drills in the period](chart.png)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert any("| termination-notice | cli | PASS | 7.1 s | 5.4 s | 0 of 1234 |" in r
               for r in rows), rows
    assert any("| db-primary-crash | chaostoolkit | FAIL |" in r for r in rows), rows
    assert any("| partition | schedule | ERROR |" in r for r in rows), rows
    assert "missed: rpo_writes measured 2 writes, limit 0 writes" in text
    assert "broke: DrillRefused: nftables needs root" in text
    for name, site in config.sites.items():
        assert any(r.startswith(f"| {name} | site | {site.provider} |") for r in rows)
    assert f"within {config.objectives.rto_seconds:.1f} s" in text
    assert "- total-loss: " in text  # a gap, with its summary
    for name, runbook in RUNBOOKS.items():
        assert f"| {name} | {hashlib.sha256(runbook.encode()).hexdigest()} |" in text
    assert "| alice | switchover m1 | aws → hetzner |" in text


def test_the_files_are_dated_and_the_html_carries_the_chart_inside(
        config: FailoverConfig, runbooks: Path, tmp_path: Path) -> None:
    seed(config)
    paths = write_evidence(gathered(config, runbooks), tmp_path / "out")
    stem = f"exit-plan-evidence-{NOW:%Y-%m-%d}"
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        f"{stem}.md", f"{stem}.html", f"{stem}.png"}
    png = paths["png"].read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    html = paths["html"].read_text()
    embedded = re.search(r'<img alt="Drills in the period" src="data:image/png;base64,'
                         r'([A-Za-z0-9+/=]+)">', html)
    assert embedded is not None and base64.b64decode(embedded.group(1)) == png
    assert '<td class="PASS">PASS</td>' in html and '<td class="FAIL">FAIL</td>' in html
    assert "http" not in html.split("<body>")[0]  # nothing fetched from elsewhere
    assert f"![Drills in the period]({stem}.png)" in paths["md"].read_text()


def test_text_from_the_records_is_escaped_in_the_html(config: FailoverConfig,
                                                      runbooks: Path) -> None:
    evidence = gathered(config, runbooks)
    evidence = replace(evidence, deployment="<script>alert(1)</script>")
    html = render_html(build(evidence, "chart.png"), {"chart.png": PNG_SIGNATURE})
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_command_writes_the_report_and_approve_keeps_who_approved(
        config: FailoverConfig, runbooks: Path, tmp_path: Path) -> None:
    root = config.journal.parent
    seed(config)
    store = WatchStore(store_path(config.journal))
    stamp = NOW.timestamp()
    store.save_move(Move("m2", "promote", "aws", "hetzner", "aws", "aws is down", stamp, stamp,
                         "proposed"))
    runner = CliRunner()
    approved = runner.invoke(cli, ["approve", "m2", "--by", "bob", "--state-dir", str(root)])
    assert approved.exit_code == 0, approved.output
    out = tmp_path / "evidence"
    done = runner.invoke(cli, ["evidence", "--state-dir", str(root), "--since",
                               f"{SINCE:%Y-%m-%d}", "--out", str(out),
                               "--runbooks", str(runbooks)])
    assert done.exit_code == 0, done.output
    assert "3 drill(s)" in done.output
    [md] = out.glob("exit-plan-evidence-*.md")  # dated by the real clock, as the command ran
    assert "| bob | promote m2 | aws → hetzner |" in md.read_text()
    assert str(md.with_suffix(".html")) in done.output


@pytest.mark.parametrize(("since", "message"), [
    ((NOW + timedelta(days=2)).strftime("%Y-%m-%d"), "is in the future"),
    ("29/11/2026", "does not match the format"),
])
def test_a_bad_period_is_one_line_and_writes_nothing(config: FailoverConfig, tmp_path: Path,
                                                     since: str, message: str) -> None:
    out = tmp_path / "evidence"
    done = CliRunner().invoke(cli, ["evidence", "--state-dir", str(config.journal.parent),
                                    "--since", since, "--out", str(out)])
    assert done.exit_code == 2 and message in done.output, done.output
    assert not out.exists()
