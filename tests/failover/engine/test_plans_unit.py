"""The planner over topologies written by hand: which plan it makes, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from failover.engine.checks import MAX_LAG_BYTES
from failover.engine.deployment import Deployment, Topology
from failover.engine.plan import Plan
from failover.engine.plans import (
    NothingToDo,
    plan_or_resume,
    plan_prepare,
    plan_promote,
    plan_rejoin,
    plan_switchover,
)
from failover.exceptions import ConfigError, UnsafePlan
from tests.failover.engine.conftest import (
    FakeDeployment,
    actions,
    config_data,
    gone,
    healthy,
    primary,
    standby,
    topology,
)

SWITCHOVER = [
    "check_switchover", "lower_ttl", "sync_objects", "synchronous_replication", "wait_low_ttl",
    "fence", "catch_up", "promote", "wait_writable", "switch_dns", "restore_ttl", "sync_objects",
    "rejoin", "check_result",
]
PROMOTE = [
    "check_emergency", "check_rpo", "fence", "await_lease", "promote", "wait_writable",
    "switch_dns", "sync_objects", "check_result",
]
# aws, the primary, is gone; hetzner is a standby that streams from nothing now.
AWS_GONE = topology(gone("aws"), standby("hetzner", None))


def to_hetzner(d: Deployment, t: Topology) -> Plan:
    return plan_switchover(d, "hetzner", t)


def to_aws(d: Deployment, t: Topology) -> Plan:
    return plan_switchover(d, "aws", t)


def three_sites(tmp_path: Path) -> FakeDeployment:
    return FakeDeployment(tmp_path, config_data(("aws", "hetzner", "ovh")))


def params(plan: Plan, action: str) -> list[dict[str, object]]:
    return [dict(s.params) for s in plan.steps if s.action == action]


# -- switchover --------------------------------------------------------------


def test_a_switchover_fences_before_it_promotes_and_rejoins_the_old_primary(
    deployment: FakeDeployment,
) -> None:
    plan = plan_switchover(deployment, "hetzner", healthy("aws"))
    assert (plan.kind, plan.from_site, plan.to_site) == ("switchover", "aws", "hetzner")
    assert actions(plan) == SWITCHOVER
    assert plan.steps[0].params == {"from": "aws", "to": "hetzner",
                                    "max_lag_bytes": MAX_LAG_BYTES}
    assert params(plan, "lower_ttl") == [{"site": "aws", "ttl": 5}]
    wait = next(s for s in plan.steps if s.action == "wait_low_ttl")
    assert wait.timeout == 60 + 30  # the records' normal TTL, and a margin
    assert params(plan, "fence") == [{"site": "aws", "best_effort": False}]
    assert params(plan, "rejoin") == [{"site": "aws", "primary": "hetzner"}]
    assert params(plan, "check_result") == [
        {"primary": "hetzner", "standbys": ["aws"], "ttl": 60}]
    assert [s.action for s in plan.steps if not s.changes] == [
        "check_switchover", "wait_low_ttl", "wait_writable", "check_result"]
    assert plan.notes == ()


def test_the_same_world_gives_the_same_plan(deployment: FakeDeployment) -> None:
    first = plan_switchover(deployment, "hetzner", healthy("aws"))
    assert plan_switchover(deployment, "hetzner", healthy("aws")).checksum() == first.checksum()
    assert plan_switchover(deployment, "aws", healthy("hetzner")).checksum() != first.checksum()


def test_a_switchover_back_is_the_mirror_image(deployment: FakeDeployment) -> None:
    plan = plan_switchover(deployment, "aws", healthy("hetzner"))
    assert (plan.from_site, plan.to_site) == ("hetzner", "aws")
    assert params(plan, "fence") == [{"site": "hetzner", "best_effort": False}]


def test_an_old_primary_without_compute_stays_fenced_and_the_plan_says_so(
    tmp_path: Path,
) -> None:
    deployment = FakeDeployment(tmp_path, config_data(without_compute=("aws",)))
    plan = plan_switchover(deployment, "hetzner", healthy("aws"))
    assert "rejoin" not in actions(plan)
    assert params(plan, "check_result")[0]["standbys"] == []
    assert plan.notes == ("aws has no compute adapter: it stays fenced; make it a standby of "
                          "hetzner by hand",)


def test_switching_over_to_the_primary_is_nothing_to_do(deployment: FakeDeployment) -> None:
    with pytest.raises(NothingToDo, match="aws is already the primary") as raised:
        plan_switchover(deployment, "aws", healthy("aws"))
    assert raised.value.exit_code == 0


def test_an_unknown_site_is_named_with_the_sites_there_are(deployment: FakeDeployment) -> None:
    with pytest.raises(ConfigError, match=r"no site 'gcp'.*aws, hetzner"):
        plan_switchover(deployment, "gcp", healthy("aws"))


def test_two_primaries_are_refused_until_one_is_fenced_by_hand(
    deployment: FakeDeployment,
) -> None:
    both = topology(primary("aws"), primary("hetzner"))
    with pytest.raises(UnsafePlan, match="aws and hetzner both answer as primary: fence one"):
        plan_switchover(deployment, "hetzner", both)


def test_no_primary_names_the_unreachable_and_points_at_promote(
    deployment: FakeDeployment,
) -> None:
    with pytest.raises(UnsafePlan, match=r"no site answers as primary \(aws unreachable\).*"
                                         "failover promote --site SITE"):
        plan_switchover(deployment, "hetzner", AWS_GONE)


def test_a_fenced_primary_is_no_primary_to_switch_over_from(deployment: FakeDeployment) -> None:
    fenced = topology(primary("aws", "hetzner", fenced=True), standby("hetzner", "aws"))
    with pytest.raises(UnsafePlan, match=r"no site answers as primary;"):
        plan_switchover(deployment, "hetzner", fenced)


def test_a_switchover_is_refused_with_the_checks_own_sentence(
    deployment: FakeDeployment,
) -> None:
    lagging = topology(primary("aws", "hetzner", lag=MAX_LAG_BYTES + 1),
                       standby("hetzner", "aws"))
    with pytest.raises(UnsafePlan, match="hetzner is 16777217 bytes behind aws"):
        plan_switchover(deployment, "hetzner", lagging)


def test_three_sites_switch_over_to_the_one_named(tmp_path: Path) -> None:
    deployment = three_sites(tmp_path)
    plan = plan_switchover(deployment, "ovh", healthy("aws", "hetzner", "ovh"))
    assert (plan.from_site, plan.to_site) == ("aws", "ovh")
    assert params(plan, "fence") == [{"site": "aws", "best_effort": False}]
    assert params(plan, "promote") == [{"site": "ovh"}]


# -- prepare -----------------------------------------------------------------


def test_prepare_is_the_switchovers_first_four_steps(deployment: FakeDeployment) -> None:
    plan = plan_prepare(deployment, "hetzner", healthy("aws"))
    move = plan_switchover(deployment, "hetzner", healthy("aws"))
    assert (plan.kind, plan.from_site, plan.to_site) == ("prepare", "aws", "hetzner")
    assert plan.steps == move.steps[:4]
    assert actions(plan) == [
        "check_switchover", "lower_ttl", "sync_objects", "synchronous_replication"]


def test_prepare_is_refused_as_the_switchover_would_be(deployment: FakeDeployment) -> None:
    with pytest.raises(NothingToDo):
        plan_prepare(deployment, "aws", healthy("aws"))
    deployment.not_ready["hetzner"] = "database read-only"
    with pytest.raises(UnsafePlan, match="hetzner fails its own readiness check"):
        plan_prepare(deployment, "hetzner", healthy("aws"))


# -- promote -----------------------------------------------------------------


def test_a_promote_that_may_lose_writes_needs_accept_data_loss(
    deployment: FakeDeployment,
) -> None:
    with pytest.raises(UnsafePlan, match=r"hetzner may lack writes that aws acknowledged.*"
                                         r"allows 0 lost writes.*--accept-data-loss"):
        plan_promote(deployment, "hetzner", AWS_GONE, accept_data_loss=False)


def test_a_promote_with_the_loss_accepted_fences_the_old_primary_if_it_answers(
    deployment: FakeDeployment,
) -> None:
    plan = plan_promote(deployment, "hetzner", AWS_GONE, accept_data_loss=True)
    assert (plan.kind, plan.from_site, plan.to_site) == ("promote", "aws", "hetzner")
    assert actions(plan) == PROMOTE
    assert params(plan, "check_rpo") == [
        {"site": "hetzner", "synchronous": False, "accept_data_loss": True}]
    assert params(plan, "fence") == [{"site": "aws", "best_effort": True}]
    assert params(plan, "await_lease") == [{"site": "aws"}]  # promoted only once aws is fenced
    assert params(plan, "check_result") == [{"primary": "hetzner", "standbys": [], "ttl": 60}]
    assert plan.notes[0].startswith("aws does not answer: it cannot be fenced")
    assert "failover rejoin --site aws" in plan.notes[0]
    assert "accepted with --accept-data-loss" in plan.notes[1]


def test_an_objective_that_allows_lost_writes_needs_no_flag(tmp_path: Path) -> None:
    deployment = FakeDeployment(tmp_path, config_data(rpo_writes=10))
    plan = plan_promote(deployment, "hetzner", AWS_GONE, accept_data_loss=False)
    assert plan.notes[1] == "replication was asynchronous: up to the objective's 10 writes " \
                            "may be lost"


def test_after_a_finished_preparation_nothing_acknowledged_is_missing(
    deployment: FakeDeployment,
) -> None:
    prepared = plan_prepare(deployment, "hetzner", healthy("aws"))
    run = deployment.journal.begin(prepared)
    deployment.journal.ended(run, "ok")
    plan = plan_promote(deployment, "hetzner", AWS_GONE, accept_data_loss=False)
    assert params(plan, "check_rpo")[0]["synchronous"] is True
    assert "no acknowledged write is missing" in plan.notes[1]


def test_a_switchover_stopped_between_synchronous_and_promote_counts_as_synchronous(
    deployment: FakeDeployment,
) -> None:
    move = plan_switchover(deployment, "hetzner", healthy("aws"))
    run = deployment.journal.begin(move)
    for index, step in enumerate(move.steps[:6]):  # up to and including the fence
        deployment.journal.step_started(run, index, step.action)
        deployment.journal.step_ended(run, index, step.action, "ok")
    plan = plan_promote(deployment, "hetzner", AWS_GONE, accept_data_loss=False)
    assert params(plan, "check_rpo")[0]["synchronous"] is True


def test_promoting_the_primary_is_nothing_to_do(deployment: FakeDeployment) -> None:
    with pytest.raises(NothingToDo, match="hetzner is already the primary"):
        plan_promote(deployment, "hetzner", healthy("hetzner"), accept_data_loss=True)


def test_a_promote_while_the_primary_answers_is_refused(deployment: FakeDeployment) -> None:
    with pytest.raises(UnsafePlan, match="aws answers as a primary: promoting hetzner would "
                                         "make two"):
        plan_promote(deployment, "hetzner", healthy("aws"), accept_data_loss=True)


def test_three_sites_name_the_old_primary_in_every_step(tmp_path: Path) -> None:
    deployment = three_sites(tmp_path)
    world = topology(gone("aws"), standby("hetzner", None), standby("ovh", None))
    plan = plan_promote(deployment, "hetzner", world, accept_data_loss=True)
    assert plan.from_site == "aws"
    assert params(plan, "fence") == [{"site": "aws", "best_effort": True}]
    assert params(plan, "sync_objects")[0]["from"] == "aws"
    # Every site a step names is a configured site: a run could act on each.
    named = {v for s in plan.steps for k, v in s.params.items() if k in ("site", "from", "to")}
    assert named <= set(deployment.config.sites)
    assert "old primary" not in json.dumps(plan.to_dict())


def test_three_sites_a_fenced_old_primary_is_the_one_taken_over_from(tmp_path: Path) -> None:
    deployment = three_sites(tmp_path)
    world = topology(standby("hetzner", None), primary("aws", fenced=True), standby("ovh", None))
    plan = plan_promote(deployment, "hetzner", world, accept_data_loss=True)
    assert plan.from_site == "aws"


def test_three_sites_two_gone_cannot_tell_which_was_the_primary(tmp_path: Path) -> None:
    deployment = three_sites(tmp_path)
    world = topology(gone("aws"), standby("hetzner", None), gone("ovh"))
    with pytest.raises(UnsafePlan, match="aws and ovh do not answer as standbys: cannot tell "
                                         "which of them was the primary"):
        plan_promote(deployment, "hetzner", world, accept_data_loss=True)


def test_three_sites_all_standbys_have_no_old_primary(tmp_path: Path) -> None:
    deployment = three_sites(tmp_path)
    world = topology(standby("aws", None), standby("hetzner", None), standby("ovh", None))
    with pytest.raises(UnsafePlan, match="aws and ovh answer as standbys"):
        plan_promote(deployment, "hetzner", world, accept_data_loss=True)


# -- rejoin ------------------------------------------------------------------


def test_a_rejoin_makes_the_old_primary_a_standby_of_the_new(deployment: FakeDeployment) -> None:
    after_promote = topology(gone("aws"), primary("hetzner"))
    plan = plan_rejoin(deployment, "aws", after_promote)
    assert (plan.kind, plan.from_site, plan.to_site) == ("rejoin", "aws", "hetzner")
    assert actions(plan) == ["check_rejoin", "rejoin", "check_result"]
    assert params(plan, "rejoin") == [{"site": "aws", "primary": "hetzner"}]
    assert params(plan, "check_result") == [
        {"primary": "hetzner", "standbys": ["aws"], "ttl": 60}]


def test_in_a_split_brain_the_site_named_rejoins_the_other(deployment: FakeDeployment) -> None:
    both = topology(primary("aws"), primary("hetzner"))
    assert plan_rejoin(deployment, "aws", both).to_site == "hetzner"


def test_a_standby_already_streaming_from_the_primary_is_nothing_to_do(
    deployment: FakeDeployment,
) -> None:
    with pytest.raises(NothingToDo, match="hetzner already streams from aws"):
        plan_rejoin(deployment, "hetzner", healthy("aws"))


def test_a_rejoin_needs_exactly_one_other_primary(tmp_path: Path) -> None:
    deployment = three_sites(tmp_path)
    with pytest.raises(UnsafePlan, match=r"no other site answers as the only primary \(none\)"):
        plan_rejoin(deployment, "aws", topology(gone("aws"), standby("hetzner", None),
                                                 standby("ovh", None)))
    with pytest.raises(UnsafePlan, match=r"\(hetzner, ovh\); aws can only rejoin a primary"):
        plan_rejoin(deployment, "aws", topology(gone("aws"), primary("hetzner"), primary("ovh")))


def test_a_site_without_compute_is_rejoined_by_hand(tmp_path: Path) -> None:
    deployment = FakeDeployment(tmp_path, config_data(without_compute=("aws",)))
    with pytest.raises(UnsafePlan, match=r"site aws has no compute adapter in .*failover\.yaml: "
                                         "make it a standby of hetzner by hand"):
        plan_rejoin(deployment, "aws", topology(gone("aws"), primary("hetzner")))


# -- an unfinished run -------------------------------------------------------


def interrupted(deployment: FakeDeployment, plan: Plan) -> str:
    """A run of ``plan`` killed after its first step that changes something had started."""
    run = deployment.journal.begin(plan)
    first = next(i for i, s in enumerate(plan.steps) if s.changes)
    deployment.journal.step_started(run, first, plan.steps[first].action)
    return run


def test_the_same_command_resumes_the_unfinished_run_with_its_own_plan(
    deployment: FakeDeployment,
) -> None:
    started = plan_switchover(deployment, "hetzner", healthy("aws"))
    run = interrupted(deployment, started)
    deployment.seen = topology(primary("aws", fenced=True), standby("hetzner", "aws"))
    plan, record = plan_or_resume(deployment, "switchover", "hetzner", to_hetzner)
    assert plan == started and record is not None and record.id == run


def test_any_other_command_is_refused_until_the_run_is_finished(
    deployment: FakeDeployment,
) -> None:
    run = interrupted(deployment, plan_switchover(deployment, "hetzner", healthy("aws")))
    deployment.seen = healthy("aws")
    with pytest.raises(UnsafePlan, match=rf"run {run} \(switchover aws -> hetzner\) did not "
                                         r"finish \(interrupted\); finish it first: failover "
                                         rf"switchover --to hetzner .*failover abandon {run}"):
        plan_or_resume(deployment, "switchover", "aws", to_aws)


def test_with_nothing_unfinished_a_new_plan_is_made_from_what_the_servers_say(
    deployment: FakeDeployment,
) -> None:
    deployment.seen = healthy("aws")
    plan, record = plan_or_resume(deployment, "switchover", "hetzner", to_hetzner)
    assert record is None and plan == plan_switchover(deployment, "hetzner", healthy("aws"))


def test_a_run_that_changed_nothing_is_not_in_the_way(deployment: FakeDeployment) -> None:
    deployment.journal.begin(plan_switchover(deployment, "hetzner", healthy("aws")))
    deployment.seen = topology(gone("aws"), primary("hetzner"))
    plan, record = plan_or_resume(deployment, "rejoin", "aws",
                                  lambda d, t: plan_rejoin(d, "aws", t))
    assert record is None
    assert (plan.kind, plan.from_site, plan.to_site) == ("rejoin", "aws", "hetzner")
