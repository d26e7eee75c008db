"""The drills of a cluster of controllers, over hand-built facts (no lab, no etcd).

What the drill saw of the lead (``leadership.ClusterFacts``), how the
objectives judge it, which controller each scenario has lead, and the drill's
hands on the controllers' processes (a ``sleep`` stands in for ``failover
watch`` where only its process matters).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from failover.cluster.etcd import Entry
from failover.drill.controller import ControllerFailed, DrillController
from failover.drill.leadership import (
    ClusterFacts,
    Deposed,
    Leadership,
    LeaderWatch,
    run_starts,
)
from failover.drill.objectives import (
    RAFT_ELECTION_SECONDS,
    USUAL_OUTAGE_SECONDS,
    Measured,
    deposed_leader_changed_nothing,
    judge,
    leader_kept,
    move_ran_once,
    no_decision_to_act,
    no_move_made,
    resumed_once_by_new_leader,
    resumed_within_ttl,
    writes_kept_flowing,
)
from failover.drill.results import Promise
from failover.drill.scenarios import MIDDLE_STEP, SCENARIOS, DrillContext
from failover.engine.deployment import Deployment, open_deployment
from failover.engine.executor import FREEZE_BEFORE_STEP
from failover.engine.journal import Event, RunRecord
from failover.engine.plan import Plan, Step
from failover.processes import spawn, state_of
from failover.waiting import wait_for
from infra.lab.config import lab_config
from infra.lab.paths import LabPaths
from tests.failover.drill.test_objectives import names
from tests.failover.handbuilt import LAYOUT, lab_files

FAULT = 1_000.0
TTL, LOOP = 5.0, 1.0


def facts(*changes: tuple[float, str | None, int | None], **more: Any) -> ClusterFacts:
    """Facts of a drill whose fault came at FAULT, the lead changing at the given times."""
    return ClusterFacts(TTL, LOOP, changes=tuple(Leadership(*c) for c in changes),
                        fault_at=FAULT, **more)


def measured(cluster: ClusterFacts | None, *, outage: float = 0.0) -> Measured:
    return Measured(FAULT, FAULT + 40, 7.0, 0, 0, None, Promise(15.0, 0), 20.0,
                    longest_write_outage=outage, cluster=cluster)


def resumed_run(*starts: float) -> RunRecord:
    """A switchover begun, then resumed, at ``starts`` (a resume is another run start)."""
    plan = Plan("switchover", "aws", "hetzner", (Step("fence", "Fence aws"),
                                                   Step(MIDDLE_STEP, "Catch up")))
    events = [Event(None, "run", "start", None, at, None, None) for at in starts]
    events.insert(1, Event(0, "fence", "start", None, starts[0] + 0.1, None, None))
    return RunRecord("r-1", plan, starts[0], tuple(events))


# -- what the drill saw of the lead ------------------------------------------------------


def test_the_lead_before_and_after_the_fault_and_who_took_it() -> None:
    seen = facts((FAULT - 30, "spare", 40), (FAULT + 9.0, None, None),
                 (FAULT + 9.6, "aws", 71), frozen_at=FAULT + 4.0)
    assert (str(seen.before), str(seen.after)) == ("spare (token 40)", "aws (token 71)")
    assert seen.takeover() == Leadership(FAULT + 9.6, "aws", 71)
    assert "aws (token 71) took the lead 5.6s after its leader was frozen (lease TTL 5s)" \
        in seen.summary()


def test_a_run_begun_then_resumed_counts_its_starts() -> None:
    run = resumed_run(FAULT + 1, FAULT + 10)
    assert run_starts(run) == (FAULT + 1, FAULT + 10)
    assert replace(facts(), starts=run_starts(run)).resumes == 1


def test_nothing_happened_is_said_only_when_nothing_did() -> None:
    quiet = facts((FAULT - 30, "hetzner", 12))
    assert quiet.summary()[-1] == ("nothing happened: hetzner (token 12) kept the lead, no "
                                   "decision to act, no run")
    busy = facts((FAULT - 30, "hetzner", 12), runs=1, acting_decisions=2)
    assert busy.summary()[-1] == "1 run(s) began after the fault; 2 decision(s) to act"


def test_the_leader_watch_keeps_each_change_once() -> None:
    keys = iter([Entry("leader", "spare", 40, 40, 7), Entry("leader", "spare", 40, 41, 7),
                 None, Entry("leader", "aws", 71, 71, 9)])
    watch = LeaderWatch.__new__(LeaderWatch)
    watch.changes = []
    watch.cluster = cast(Any, SimpleNamespace(get=lambda _key: next(keys)))
    for _ in range(4):
        watch.look()
    assert [(c.site, c.token) for c in watch.changes] == [("spare", 40), (None, None),
                                                           ("aws", 71)]


# -- the objectives of the lead ------------------------------------------------------------


def test_a_lone_controller_is_not_judged_on_the_lead() -> None:
    lone = measured(None)
    objectives = (move_ran_once, resumed_once_by_new_leader, resumed_within_ttl,
                  deposed_leader_changed_nothing, no_move_made, no_decision_to_act,
                  leader_kept)
    assert judge(objectives, lone) == ()


def test_a_move_resumed_once_by_a_new_leader_within_the_lease() -> None:
    run = resumed_run(FAULT + 1, FAULT + 9.8)
    seen = facts((FAULT - 30, "spare", 40), (FAULT + 9.6, "aws", 71), frozen_at=FAULT + 4.0,
                 move_runs=1, starts=run_starts(run), writers=((40, FAULT + 1), (71, FAULT + 9.8)),
                 deposed=Deposed(events=0, runs=0, primary_moved=False, refusal="deposed"))
    verdicts = {v.objective: v for v in judge(SCENARIOS["controller-site-loss"].expects,
                                              measured(seen))}
    assert all(v.met for v in verdicts.values()), verdicts
    assert verdicts["resumed_after_freeze_seconds"].measured == 5.8
    assert verdicts["resumed_after_freeze_seconds"].limit == TTL + LOOP + RAFT_ELECTION_SECONDS


def test_a_resume_too_late_twice_or_by_the_same_leader_fails() -> None:
    late = facts((FAULT - 30, "spare", 40), (FAULT + 9.6, "aws", 71), frozen_at=FAULT + 1,
                 starts=(FAULT + 1, FAULT + 1 + TTL + LOOP + RAFT_ELECTION_SECONDS + 0.1))
    assert not resumed_within_ttl(measured(late)).met  # type: ignore[union-attr]
    twice = replace(late, starts=(FAULT + 1, FAULT + 10, FAULT + 11))
    assert not resumed_once_by_new_leader(measured(twice)).met  # type: ignore[union-attr]
    same = facts((FAULT - 30, "spare", 40), starts=(FAULT + 1, FAULT + 5))
    assert not resumed_once_by_new_leader(measured(same)).met  # type: ignore[union-attr]
    # A new leader took the key, but the journal holds no write of its token.
    silent = facts((FAULT - 30, "spare", 40), (FAULT + 9.6, "aws", 71), frozen_at=FAULT + 4.0,
                   starts=(FAULT + 1, FAULT + 9.8), writers=((40, FAULT + 1),))
    assert not resumed_once_by_new_leader(measured(silent)).met  # type: ignore[union-attr]
    never = facts((FAULT - 30, "spare", 40), frozen_at=FAULT + 1, starts=(FAULT + 1,))
    assert resumed_within_ttl(measured(never)).measured is None  # type: ignore[union-attr]


def test_a_deposed_leader_that_wrote_or_was_never_checked_fails() -> None:
    wrote = facts(deposed=Deposed(events=1, runs=0, primary_moved=False))
    assert deposed_leader_changed_nothing(measured(wrote)).measured == 1  # type: ignore[union-attr]
    unknown = deposed_leader_changed_nothing(measured(facts()))
    assert unknown is not None and not unknown.met and unknown.measured is None
    moved = Deposed(events=0, runs=1, primary_moved=True)
    assert moved.writes == 2


def test_a_second_run_of_the_move_fails_ran_once() -> None:
    assert move_ran_once(measured(facts(move_runs=1))).met  # type: ignore[union-attr]
    assert not move_ran_once(measured(facts(move_runs=2))).met  # type: ignore[union-attr]
    assert not move_ran_once(measured(facts(move_runs=0))).met  # type: ignore[union-attr]


def test_an_etcd_member_lost_must_change_nothing() -> None:
    scenario = SCENARIOS["etcd-member-loss"]
    assert names(scenario) == ["nothing_lost", "no_move_made", "no_decision_to_act",
                               "leader_kept", "writes_kept_flowing"]
    calm = facts((FAULT - 30, "hetzner", 12))
    assert all(v.met for v in judge(scenario.objectives(), measured(calm)))
    relead = facts((FAULT - 30, "hetzner", 12), (FAULT + 6, "aws", 30))
    assert leader_kept(measured(relead)) is not None
    assert not leader_kept(measured(relead)).met  # type: ignore[union-attr]
    assert not no_move_made(measured(facts(runs=1))).met  # type: ignore[union-attr]
    assert not no_decision_to_act(measured(facts(acting_decisions=1))).met  # type: ignore[union-attr]
    assert writes_kept_flowing(measured(calm, outage=USUAL_OUTAGE_SECONDS)).met
    assert not writes_kept_flowing(measured(calm, outage=USUAL_OUTAGE_SECONDS + 0.1)).met


# -- the scenarios -----------------------------------------------------------------------


def test_the_controller_site_loss_is_judged_without_an_rto() -> None:
    scenario = SCENARIOS["controller-site-loss"]
    assert names(scenario) == ["nothing_lost", "run_ok", "move_ran_once",
                               "resumed_once_by_new_leader", "resumed_within_ttl",
                               "deposed_leader_changed_nothing"]
    # Its leader stops itself in the middle of the switchover: fenced, not yet promoted.
    assert dict(scenario.leader_env) == {FREEZE_BEFORE_STEP: MIDDLE_STEP}
    assert scenario.moves and not SCENARIOS["etcd-member-loss"].moves


def context(controller_sites: list[str]) -> DrillContext:
    controller = SimpleNamespace(sites=controller_sites,
                                 cluster=object() if controller_sites else None)
    return cast(DrillContext, SimpleNamespace(from_site="aws", standby_site="hetzner",
                                              to_site="hetzner", controller=controller))


@pytest.mark.parametrize(("name", "leader"), [
    ("provider-blackout", "aws"), ("controller-site-loss", "spare"),
    ("termination-notice", "hetzner"), ("etcd-member-loss", "hetzner")])
def test_each_scenario_says_whose_controller_leads(name: str, leader: str) -> None:
    assert SCENARIOS[name].leads(context(["aws", "hetzner", "spare"])) == leader


def test_the_controller_site_loss_needs_a_third_site_with_a_controller() -> None:
    with pytest.raises(ControllerFailed, match=r"watch\.cluster\.controllers"):
        SCENARIOS["controller-site-loss"].leads(context([]))
    with pytest.raises(ControllerFailed, match="a third site"):
        SCENARIOS["controller-site-loss"].leads(context(["aws", "hetzner"]))


# -- the drill's hands on the controllers ----------------------------------------------------


def cluster_deployment(tmp_path: Path) -> Deployment:
    """The lab's deployment with its cluster of controllers, one per site."""
    root = lab_files(tmp_path / "lab")
    config = lab_config(LAYOUT, LabPaths(root))
    (root / "failover.yaml").write_text(yaml.safe_dump(config))
    return open_deployment(None, root)


def test_a_cluster_runs_a_controller_per_site_each_with_its_log(tmp_path: Path) -> None:
    controller = DrillController(cluster_deployment(tmp_path), tmp_path / "watch-drill.log")
    assert controller.sites == ["aws", "hetzner", "spare"]
    assert [m.log.name for m in controller.members] == [
        "watch-drill-aws.log", "watch-drill-hetzner.log", "watch-drill-spare.log"]
    assert controller.member("spare").url == f"http://{LAYOUT.address('spare')}:" \
        f"{LAYOUT.watch_port}"
    with pytest.raises(ControllerFailed, match="no controller runs at site 'moon'"):
        controller.member("moon")


def test_a_lone_controller_is_one_as_before(tmp_path: Path) -> None:
    deployment = open_deployment(None, lab_files(tmp_path / "lab"))
    controller = DrillController(deployment, tmp_path / "watch-drill.log")
    assert controller.sites == [] and controller.facts is None
    assert controller.url == f"http://{LAYOUT.watch_address}:{LAYOUT.watch_port}"
    assert controller.stop() == "failover watch was not started"


def test_a_frozen_controller_is_thawed_then_stopped(tmp_path: Path) -> None:
    controller = DrillController(cluster_deployment(tmp_path), tmp_path / "watch-drill.log")
    for member in controller.members:  # a process stands in for each controller
        member.record = spawn(f"watch@{member.site}", ["sleep", "60"], log=member.log)
    pids = [m.record.pid for m in controller.members if m.record]
    assert controller.freeze("spare") == f"froze spare's controller (pid {pids[2]})"
    wait_for(lambda: controller.stopped("spare"), timeout=5, what="spare stopped", retry_on=())
    assert not controller.stopped("aws")
    controller.thaw("spare")
    wait_for(lambda: not controller.stopped("spare"), timeout=5, what="spare thawed",
             retry_on=())
    controller.freeze("aws")
    said = controller.stop(timeout=5)
    assert all(f"(pid {pid}): stopped" in said for pid in pids), said
    assert all(state_of(pid) in (None, "Z") for pid in pids)
