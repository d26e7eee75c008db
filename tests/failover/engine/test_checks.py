"""The safety checks of a move over topologies written by hand: each refusal in its words."""

from __future__ import annotations

import time
from pathlib import Path

from failover.engine.checks import MAX_LAG_BYTES, emergency_problem, switchover_problem
from tests.failover.engine.conftest import (
    FakeDeployment,
    config_data,
    gone,
    healthy,
    primary,
    standby,
    topology,
    with_view,
)

AWS_GONE = topology(gone("aws"), standby("hetzner", None))


# -- a planned move ----------------------------------------------------------


def test_a_ready_standby_streaming_from_the_only_primary_may_take_over(
    deployment: FakeDeployment,
) -> None:
    assert switchover_problem(deployment, healthy("aws"), "aws", "hetzner") is None
    assert switchover_problem(deployment, healthy("hetzner"), "hetzner", "aws") is None


def test_two_primaries(deployment: FakeDeployment) -> None:
    both = topology(primary("aws"), primary("hetzner"))
    assert switchover_problem(deployment, both, "aws", "hetzner") == (
        "expected aws to be the only primary, found aws, hetzner")


def test_a_fenced_primary_is_no_primary(deployment: FakeDeployment) -> None:
    fenced = with_view(healthy("aws"), primary("aws", "hetzner", fenced=True))
    assert switchover_problem(deployment, fenced, "aws", "hetzner") == (
        "expected aws to be the only primary, found none")


def test_a_standby_streaming_from_another_site(tmp_path: Path) -> None:
    deployment = FakeDeployment(tmp_path, config_data(("aws", "hetzner", "ovh")))
    cascaded = topology(primary("aws", "ovh"), standby("ovh", "aws"), standby("hetzner", "ovh"))
    assert switchover_problem(deployment, cascaded, "aws", "hetzner") == (
        "hetzner is not a standby streaming from aws (standby, streaming from ovh)")


def test_a_standby_streaming_from_nothing(deployment: FakeDeployment) -> None:
    cut_off = with_view(healthy("aws"), standby("hetzner", None))
    assert switchover_problem(deployment, cut_off, "aws", "hetzner") == (
        "hetzner is not a standby streaming from aws (standby, streaming from nothing)")


def test_an_unreachable_target_says_why(deployment: FakeDeployment) -> None:
    dark = with_view(healthy("aws"), gone("hetzner"))
    assert switchover_problem(deployment, dark, "aws", "hetzner") == (
        "hetzner is not a standby streaming from aws "
        "(OperationalError: connection timed out)")


def test_a_standby_further_behind_than_the_limit(deployment: FakeDeployment) -> None:
    at_limit = with_view(healthy("aws"), primary("aws", "hetzner", lag=MAX_LAG_BYTES))
    assert switchover_problem(deployment, at_limit, "aws", "hetzner") is None
    beyond = with_view(healthy("aws"), primary("aws", "hetzner", lag=MAX_LAG_BYTES + 1))
    assert switchover_problem(deployment, beyond, "aws", "hetzner") == (
        f"hetzner is {MAX_LAG_BYTES + 1} bytes behind aws (limit {MAX_LAG_BYTES}); "
        "wait for it to catch up")
    assert switchover_problem(deployment, beyond, "aws", "hetzner",
                              max_lag_bytes=MAX_LAG_BYTES + 1) is None


def test_lag_is_found_under_the_name_the_standby_streams_as(tmp_path: Path) -> None:
    data = config_data()
    data["sites"]["hetzner"]["database"]["application_name"] = "hz-pg"
    deployment = FakeDeployment(tmp_path, data)
    lag_as_site = with_view(healthy("aws"), primary("aws", "hetzner", lag=MAX_LAG_BYTES * 2))
    assert switchover_problem(deployment, lag_as_site, "aws", "hetzner") is None
    lag_as_name = with_view(healthy("aws"), primary("aws", "hz-pg", lag=MAX_LAG_BYTES * 2))
    assert "bytes behind aws" in str(switchover_problem(deployment, lag_as_name, "aws",
                                                        "hetzner"))


def test_three_sites_only_the_targets_lag_counts(tmp_path: Path) -> None:
    deployment = FakeDeployment(tmp_path, config_data(("aws", "hetzner", "ovh")))
    world = topology(primary("aws", "hetzner"), standby("hetzner", "aws"), standby("ovh", "aws"))
    world = with_view(world, primary("aws", "hetzner", "ovh", lag=0))
    assert switchover_problem(deployment, world, "aws", "ovh") is None
    assert switchover_problem(deployment, world, "aws", "hetzner") is None


def test_a_target_that_fails_its_own_readiness_check(deployment: FakeDeployment) -> None:
    deployment.not_ready["hetzner"] = "http://10.0.20.1:8080/readyz answered 503"
    assert switchover_problem(deployment, healthy("aws"), "aws", "hetzner") == (
        "hetzner fails its own readiness check: http://10.0.20.1:8080/readyz answered 503")
    deployment.not_ready["aws"] = "the source's readiness does not matter"
    del deployment.not_ready["hetzner"]
    assert switchover_problem(deployment, healthy("aws"), "aws", "hetzner") is None


# -- an emergency ------------------------------------------------------------


def test_a_standby_whose_primary_is_gone_may_be_promoted(deployment: FakeDeployment) -> None:
    assert emergency_problem(deployment, AWS_GONE, "hetzner") is None


def test_a_primary_that_answers_is_a_switchover_not_an_emergency(
    deployment: FakeDeployment,
) -> None:
    assert emergency_problem(deployment, healthy("aws"), "hetzner") == (
        "aws answers as a primary: promoting hetzner would make two; for a planned move use: "
        "failover switchover --to hetzner")


def test_a_fenced_primary_takes_no_writes_so_a_promote_is_allowed(
    deployment: FakeDeployment,
) -> None:
    fenced = topology(primary("aws", fenced=True), standby("hetzner", None))
    assert emergency_problem(deployment, fenced, "hetzner") is None


def test_an_unreachable_target_cannot_be_promoted(deployment: FakeDeployment) -> None:
    both_dark = topology(gone("aws"), gone("hetzner"))
    assert emergency_problem(deployment, both_dark, "hetzner") == (
        "hetzner's database does not answer (OperationalError: connection timed out); it "
        "cannot be promoted")


def test_a_target_still_streaming_sees_its_primary_alive(deployment: FakeDeployment) -> None:
    # The probes lost aws, but hetzner still streams from it: not an emergency.
    half = topology(gone("aws"), standby("hetzner", "aws"))
    assert emergency_problem(deployment, half, "hetzner") == (
        "hetzner still streams from aws: that primary is alive as hetzner sees it; for a "
        "planned move use: failover switchover --to hetzner (an emergency promote waits "
        "until its lease has lapsed)")


def test_a_target_streaming_from_a_primary_whose_lease_lapsed_may_be_promoted(
    deployment: FakeDeployment,
) -> None:
    # Cut off from the controller only (a partition): once aws's lease has lapsed its
    # agent has fenced it, so hetzner, which still streams from it, has every write.
    half = topology(gone("aws"), standby("hetzner", "aws"))
    deployment.lease_book.granting("aws", time.time() - 60)
    assert emergency_problem(deployment, half, "hetzner") is None
    deployment.lease_book.granting("aws", time.time() + 60)  # renewed: held again
    assert emergency_problem(deployment, half, "hetzner") is not None


def test_an_emergency_target_must_be_ready_too(deployment: FakeDeployment) -> None:
    deployment.not_ready["hetzner"] = "database unreachable"
    assert emergency_problem(deployment, AWS_GONE, "hetzner") == (
        "hetzner fails its own readiness check: database unreachable")


def test_three_sites_a_second_primary_anywhere_is_refused(tmp_path: Path) -> None:
    deployment = FakeDeployment(tmp_path, config_data(("aws", "hetzner", "ovh")))
    world = topology(gone("aws"), standby("hetzner", None), primary("ovh"))
    assert str(emergency_problem(deployment, world, "hetzner")).startswith(
        "ovh answers as a primary: promoting hetzner would make two")
    calm = topology(gone("aws"), standby("hetzner", None), standby("ovh", None))
    assert emergency_problem(deployment, calm, "hetzner") is None
