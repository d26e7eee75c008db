"""Every scenario end to end in the lab of the moves, and the report's figures checked.

Lost writes are checked against the databases here too: a drill that drops
writes on purpose (a standby cut off from its primary, then promoted with the
loss accepted) must count exactly the acknowledged writes the new primary
lacks, and fail its objectives for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from failover.data.postgres import PgEndpoint
from failover.drill.runner import Drill, DrillOptions
from failover.drill.scenarios import SCENARIOS, DrillContext, Scenario
from failover.drill.workload import WorkloadSpec, missing_posts
from failover.engine.deployment import open_deployment
from failover.waiting import wait_for
from failover.watch.providers import check_api
from tests.conftest import RunningLab, private_tmpdir
from tests.failover.engine.test_moves_in_lab import assert_whole, failover

pytestmark = pytest.mark.lab

QUICK = ("--notice", "40", "--settle", "1", "--rate", "20")  # a move takes 9 to 32 s (see below)


@pytest.fixture
def lab(drill_lab: RunningLab) -> RunningLab:
    """The drills' lab (shared): every drill moves its primary and moves it back."""
    return drill_lab


def options(scenario: str, **overrides: Any) -> DrillOptions:
    """Short drills: a 2 s baseline, 1 s of settling, 20 requests a second."""
    return DrillOptions(scenario=scenario, warmup_seconds=2, settle_seconds=1,
                        workload=WorkloadSpec(rate=20), **overrides)


def run_drill(lab: RunningLab, opts: DrillOptions,
              scenario: Scenario | None = None) -> dict[str, Any]:
    """The drill's report as report.json holds it."""
    deployment = open_deployment(None, lab.lab.paths.root)
    return Drill(deployment, opts, scenario=scenario).run().to_dict()


def app_db(lab: RunningLab, site: str) -> PgEndpoint:
    return lab.endpoint(site, dbname="social")


def assert_ran(lab: RunningLab, report: dict[str, Any], kind: str) -> None:
    """The drill's run was of ``kind`` and ended ok; if not, say which step failed and why
    (with what the hosts of the move logged)."""
    failed = [f"{s['action']} ({s['outcome']}): {s['error']}" for s in report["steps"]
              if s["error"]]
    # A string, not a tuple: pytest shortens the repr of a tuple, and the error is the point.
    run = report["run"] or {}  # None: no run was made at all
    assert (run.get("kind"), run.get("outcome")) == (kind, "ok"), "\n".join(
        [f"run {report['run']}", *failed,
         *(f"{e['at']:8.3f} {e['source']}: {e['event']}" for e in report["timeline"][-20:]),
         lab.log_tails(*(f"{part}@{site}" for site in (report["from_site"], report["to_site"])
                         for part in ("agent", "postgres", "hcloud")))])


def assert_consistent(report: dict[str, Any]) -> None:
    """Figures that must agree with each other whatever the scenario."""
    assert report["acked_writes"] == report["acked_posts"] + report["acked_media"]
    assert report["lost_writes"] == report["lost_posts"] + report["lost_media"]
    assert report["acked_posts"] > 0 and report["requests"] >= report["acked_writes"]
    assert sum(report["errors_by_cause"].values()) <= report["requests"] - report["acked_writes"]
    if report["rto_seconds"] is not None:
        assert report["rto_seconds"] > 0
        assert report["dns_switch_seconds"] is not None
        assert report["dns_switch_seconds"] <= report["rto_seconds"]
    assert report["objectives_met"] == all(v["met"] for v in report["verdicts"])
    indices = [s["index"] for s in report["steps"]]
    assert indices == sorted(set(indices))  # journal order, one entry per step
    assert report["failback"]["done"], report["failback"]


def test_termination_notice_through_the_cli_loses_nothing_and_fails_back(
    lab: RunningLab,
) -> None:
    out = private_tmpdir("failover-test-drill-report-")
    json_file = out / "drill.json"
    done = failover(lab, "drill", "--yes", *QUICK, "--report-dir", str(out / "report"),
                    "--json", str(json_file), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(json_file.read_text())
    assert report["scenario"] == "termination-notice"
    assert (report["from_site"], report["to_site"]) == ("aws", "hetzner")
    assert report["lost_writes"] == 0 and report["objectives_met"]
    assert "PASS" in done.stdout and str(out / "report") in done.stdout
    assert {s["action"] for s in report["steps"]} >= {"fence", "promote", "switch_dns"}
    assert all(s["outcome"] == "ok" for s in report["steps"])
    deadline = next(v for v in report["verdicts"] if v["objective"] == "move_finished_seconds")
    # The move ends with the old primary rejoined; its stop waits for its archiver to push
    # the last WAL off-provider, which took up to 25 s in CI: a notice of 40 s, not 20.
    assert deadline["met"] and deadline["measured"] < 40
    assert any("deadline" in e["event"] and "killed" in e["event"] for e in report["timeline"])
    assert_consistent(report)
    files = {p.name for p in (out / "report").iterdir()}
    assert files == {"report.json", "report.md", "timeline.png"}
    assert (out / "report" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "report" / "report.json").read_text()) == report
    # Failed back: the old site was rebuilt after being killed, and is primary again.
    assert_whole(lab, "aws")


def test_provider_blackout_is_detected_promoted_and_rolled_back(lab: RunningLab) -> None:
    report = run_drill(lab, options("provider-blackout"))
    assert_ran(lab, report, "promote")
    assert report["detection_seconds"] is not None and report["detection_seconds"] > 0
    assert report["rto_seconds"] is not None
    assert report["rto_seconds"] > report["detection_seconds"]
    assert report["lost_posts"] == 0  # replication is quick and the standby replays it all
    assert report["errors_by_cause"].get("timeout", 0) > 0  # a frozen site hangs requests
    assert any("could not be fenced" in w for w in report["run"]["warnings"])
    # Resumed after the promote, the old primary took none of the writes still sent to it:
    # its lease had lapsed, so it fenced itself before anything was acknowledged.
    assert report["split_brain_writes"] == 0, report["split_brain_write_ids"]
    verdict = next(v for v in report["verdicts"] if v["objective"] == "split_brain_writes")
    assert verdict["met"]
    assert any("aws comes back" in e["event"] for e in report["timeline"])
    # Objects are copied seconds after they are taken: none older than that was lost.
    media = next(v for v in report["verdicts"] if v["objective"] == "media_lost_2s_before_fault")
    assert media["met"], media
    # Detected by the controller: both vantage points, several looks in a row.
    assert any(e["source"] == "controller" and "aws is down: 2 of 2 vantage points" in e["event"]
               for e in report["timeline"])
    # The dark site's controller led (a controller at each site, the lab's watch.cluster):
    # the blackout froze it too, the next leader promoted, and the promote ran once.
    drill = [e["event"] for e in report["timeline"] if e["source"] == "drill"]
    assert any("aws leads" in e for e in drill) and \
        any("froze aws's controller" in e for e in drill), drill
    took = [n for n in report["notes"] if "took the lead" in n]
    assert took and not took[0].startswith("aws"), report["notes"]
    runs = next(v for v in report["verdicts"] if v["objective"] == "move_runs")
    assert (runs["measured"], runs["met"]) == (1, True), runs
    assert_consistent(report)
    assert_whole(lab, "aws")


def test_total_loss_is_rebuilt_at_the_spare_from_its_backups_and_put_back(
        lab: RunningLab) -> None:
    report = run_drill(lab, options("total-loss"))
    assert (report["from_site"], report["to_site"]) == ("aws", "spare")
    assert_ran(lab, report, "rebuild")
    assert report["objectives_met"], report["verdicts"]
    # etcd lost its members at aws and hetzner: the drill said so and ran on local state.
    assert any(e["source"] == "drill" and e["event"].startswith("etcd lost 2 of its 3 members")
               and "without the etcd cluster" in e["event"] for e in report["timeline"])
    assert [s["action"] for s in report["steps"]][:3] == [
        "check_rebuild", "provision", "restore_database"]
    assert "switch_dns" in {s["action"] for s in report["steps"]}
    # What was lost is what the archive had not taken: writes of the fault's last seconds.
    bound = next(v for v in report["verdicts"]
                 if v["objective"] == "writes_lost_before_the_archive")
    assert bound["met"] and bound["measured"] == 0
    # Lost posts and media are reported, not judged (copies lag under load): counted,
    # named, and said in the note beside the archive's age.
    note = next(n for n in report["notes"] if n.startswith("the newest archived WAL was"))
    assert len(report["lost_write_ids"]) == report["lost_writes"]
    if report["lost_writes"]:
        assert f"the {report['lost_writes']} writes lost were acknowledged between" in note
    else:
        assert note.endswith("no acknowledged write was lost")
    assert any(n.startswith("rebuild phases: provision") for n in report["notes"])
    assert_consistent(report)
    assert_whole(lab, "aws")
    # The spare was decommissioned: its server deleted at its provider, its agent gone.
    assert not (lab.lab.paths.site("spare")).exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft", path="/usr/sbin:/sbin") is None,
                    reason="a partition needs root and nftables (apt-get install nftables)")
def test_a_partitioned_primary_fences_itself_and_loses_nothing(lab: RunningLab) -> None:
    report = run_drill(lab, options("partition"))
    assert_ran(lab, report, "promote")
    # Clients still reached aws throughout; its lease lapsed before the promote, it
    # fenced itself, and the standby, still streaming from it, had all it acknowledged.
    assert report["split_brain_writes"] == 0, report["split_brain_write_ids"]
    assert report["lost_posts"] == 0
    assert any("cut" in e["event"] and "84712" in e["event"] for e in report["timeline"])
    assert any(e["source"] == "controller" and "aws is down" in e["event"]
               for e in report["timeline"])
    assert report["objectives_met"], report["verdicts"]
    assert_consistent(report)
    assert_whole(lab, "aws")


def test_db_primary_crash_is_detected_promoted_and_rolled_back(lab: RunningLab) -> None:
    report = run_drill(lab, options("db-primary-crash"))
    assert_ran(lab, report, "promote")
    assert report["rto_seconds"] is not None and report["detection_seconds"] is not None
    # Replication is asynchronous: a post acknowledged in the crash's last
    # milliseconds may not have reached the standby (seen once in CI: 1 post).
    # The report must count it, and the verdict must say so.
    rpo = next(v for v in report["verdicts"] if v["objective"] == "rpo_writes")
    assert rpo["measured"] == report["lost_writes"]
    assert rpo["met"] == (report["lost_writes"] <= rpo["limit"])
    assert_consistent(report)
    assert_whole(lab, "aws")
    # Whatever was lost is really missing, at the primary it failed back to.
    lost_posts = report["lost_write_ids"][:report["lost_posts"]]
    assert sorted(missing_posts(app_db(lab, "aws"), lost_posts)) == sorted(lost_posts)


def test_revoked_credentials_are_a_termination_the_controller_acts_on(lab: RunningLab) -> None:
    report = run_drill(lab, options("credentials-revoked"))
    assert_ran(lab, report, "switchover")
    controller = [e["event"] for e in report["timeline"] if e["source"] == "controller"]
    assert any("api notice: aws ends service" in e for e in controller), controller
    assert report["detection_seconds"] is not None and report["detection_seconds"] > 0
    assert report["lost_writes"] == 0  # the database still answered: a planned move
    # Repaired for the fail back: the account answers again with the key written anew.
    api = open_deployment(None, lab.lab.paths.root).config.site("aws").api
    assert api is not None and check_api(api, timeout=5).status == "up"
    assert_consistent(report)
    assert_whole(lab, "aws")


def test_a_dns_provider_lost_mid_switchover_is_reported(lab: RunningLab) -> None:
    report = run_drill(lab, options("dns-provider-loss"))
    assert report["run"]["outcome"] == "ok"
    assert any("route53" in w for w in report["run"]["warnings"])
    assert any("DNS provider lost" in e["event"] for e in report["timeline"])
    assert report["lost_posts"] == 0
    assert_consistent(report)
    assert_whole(lab, "aws")


def _cut_off_then_crash(lab: RunningLab) -> Scenario:
    """A standby cut off from its primary while writes go on; then the primary crashes."""
    hetzner = lab.endpoint("hetzner")

    def inject(ctx: DrillContext) -> str:
        with hetzner.connect() as conn:
            conn.execute("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.2 port=1'")
            conn.execute("SELECT pg_reload_conf()")

        def not_streaming() -> bool:
            with hetzner.connect() as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_wal_receiver "
                                   "WHERE status = 'streaming'").fetchone()
            return row is not None and row[0] == 0

        wait_for(not_streaming, timeout=30, what="hetzner to stop streaming", retry_on=())
        with app_db(lab, "aws").connect() as conn:
            row = conn.execute("SELECT count(*) FROM posts").fetchone()
        before = row[0] if row else 0

        def more_posts() -> bool:
            with app_db(lab, "aws").connect() as conn:
                now = conn.execute("SELECT count(*) FROM posts").fetchone()
            return now is not None and now[0] >= before + 10

        wait_for(more_posts, timeout=30, what="writes that hetzner never receives", retry_on=())
        return f"hetzner cut off from aws; then {ctx.faults.crash_database('aws')}"

    def repair(_ctx: DrillContext) -> None:
        with hetzner.connect() as conn:  # hetzner is the primary now; the setting is moot
            conn.execute("ALTER SYSTEM RESET primary_conninfo")
            conn.execute("SELECT pg_reload_conf()")

    base = SCENARIOS["db-primary-crash"]
    return Scenario("cut-off-standby", "a lagging standby promoted", planned=False,
                    inject=inject, act=base.act, repair=repair)


def test_writes_dropped_by_promoting_a_lagging_standby_are_reported_lost(
    lab: RunningLab,
) -> None:
    report = run_drill(lab, options("db-primary-crash", failback=False), _cut_off_then_crash(lab))
    try:
        assert report["to_site"] == "hetzner" and report["run"]["outcome"] == "ok"
        assert report["lost_posts"] >= 10
        assert not report["objectives_met"]
        rpo = next(v for v in report["verdicts"] if v["objective"] == "rpo_writes")
        assert not rpo["met"] and rpo["measured"] == report["lost_writes"]
        # The new primary really lacks them: asked here, not taken from the report.
        lost = report["lost_write_ids"]
        with app_db(lab, "hetzner").connect() as conn:
            found = conn.execute("SELECT count(*) FROM posts WHERE id = ANY(%s::uuid[])",
                                 (lost,)).fetchone()
            total = conn.execute("SELECT count(*) FROM posts").fetchone()
        assert found is not None and found[0] == 0
        assert total is not None and total[0] > 0
        assert report["failback"]["done"]  # rebuilt as a standby, not switched back
    finally:
        done = failover(lab, "switchover", "--to", "aws", "--yes", timeout=120)
    assert done.returncode == 0, done.stderr
    assert_whole(lab, "aws")


def test_a_bad_scenario_name_is_refused_with_the_choices(lab: RunningLab) -> None:
    done = failover(lab, "drill", "--scenario", "meteor-strike", "--yes")
    assert done.returncode == 2
    assert "meteor-strike" in done.stderr and "provider-blackout" in done.stderr


def test_a_drill_without_a_running_lab_says_how_to_start_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "failover", "drill", "--yes", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "failover lab up" in done.stderr
    assert done.stderr.count("\n") == 1  # one line, no traceback
