"""The drills of a cluster of controllers (one per site, one leading), in one lab.

In this order, each leaving the lab whole at aws: the leader's own site goes
dark in the middle of a switchover (the move finishes once, under a new
leader); an etcd member is lost (nothing happens). The blackout of the
primary's site, whose controller leads, is test_drill_in_lab.py's (the drill
always has the dark site's controller lead). One lab for the two.
"""

from __future__ import annotations

from typing import Any

import pytest

from failover.drill.leadership import run_starts
from failover.drill.runner import DrillOptions
from failover.drill.workload import WorkloadSpec
from failover.engine.deployment import open_deployment
from infra.lab import etcd
from tests.conftest import RunningLab, own_lab
from tests.failover.drill.test_drill_in_lab import assert_consistent, assert_ran, run_drill
from tests.failover.engine.test_moves_in_lab import assert_whole

pytestmark = pytest.mark.lab

lab = own_lab("127.94", "failover-test-cluster-drills-")


def options(scenario: str) -> DrillOptions:
    """Short drills: a 2 s baseline, 1 s of settling, 20 requests a second; a notice of
    40 s (a switchover takes 9 to 32 s in the lab)."""
    return DrillOptions(scenario=scenario, warmup_seconds=2, settle_seconds=1,
                        notice_seconds=40, workload=WorkloadSpec(rate=20))


def verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["objective"]: v for v in report["verdicts"]}


def unmet(report: dict[str, Any]) -> str:
    """The verdicts not met, then the timeline's end: what a failed assertion shows."""
    return "\n".join([*(str(v) for v in report["verdicts"] if not v["met"]),
                      *report["notes"],
                      *(f"{e['at']:8.3f} {e['source']}: {e['event']}"
                        for e in report["timeline"][-25:])])


def events(report: dict[str, Any], source: str) -> list[str]:
    return [e["event"] for e in report["timeline"] if e["source"] == source]


def test_the_leaders_site_lost_mid_switchover_is_resumed_once_by_a_new_leader(
        lab: RunningLab) -> None:
    report = run_drill(lab, options("controller-site-loss"))
    assert_ran(lab, report, "switchover")
    assert report["objectives_met"], unmet(report)
    judged = verdicts(report)
    assert set(judged) == {"rpo_writes", "run", "move_runs", "resumed_by_new_leader",
                           "resumed_after_freeze_seconds", "deposed_leader_writes"}
    assert report["lost_writes"] == 0
    # The notice went to a follower; the spare's controller led, and stopped itself mid-move.
    drill = events(report, "drill")
    assert any("spare leads" in e for e in drill), drill
    assert any("delivered to hetzner's controller, a follower" in e for e in drill), drill
    assert any("spare's controller stopped itself as catch_up began" in e for e in drill)
    # The journal: begun once (by spare), resumed once (by the new leader), ended ok.
    run = open_deployment(None, lab.lab.paths.root).journal.run(report["run"]["id"])
    assert len(run_starts(run)) == 2 and run.outcome == "ok"
    assert [s.action for s in run.steps() if s.action == "promote"] == ["promote"]
    assert any("deposed" in e and "changed nothing" in e
               for e in events(report, "controller")), report["timeline"]
    assert any("took the lead" in n for n in report["notes"]), report["notes"]
    assert_consistent(report)
    assert_whole(lab, "aws")


def test_an_etcd_member_lost_changes_nothing(lab: RunningLab) -> None:
    report = run_drill(lab, options("etcd-member-loss"))
    assert report["objectives_met"], unmet(report)
    assert set(verdicts(report)) == {"rpo_writes", "runs_since_fault", "acting_decisions",
                                     "leader", "longest_write_outage_seconds"}
    assert report["run"] is None and report["steps"] == []
    assert any(n.startswith("nothing happened: hetzner") for n in report["notes"]), \
        report["notes"]
    assert any("killed etcd@hetzner" in e for e in events(report, "drill"))
    # Repaired: the member started again over its data serves, back in the cluster.
    assert report["failback"]["done"], report["failback"]
    assert etcd.member_status(lab.layout, "hetzner", timeout=5)["role"] in ("leader",
                                                                            "follower")
    assert_whole(lab, "aws")
