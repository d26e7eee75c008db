"""Elections on three real etcd members: one leads; a silent leader is replaced, and knows it."""

from __future__ import annotations

import time
import uuid

import pytest

from failover.cluster.config import MARGIN
from failover.cluster.election import Election, Leader
from failover.waiting import wait_for
from tests.failover.cluster.conftest import Members

pytestmark = pytest.mark.lab

# Short, within Patroni's rule (1 + 2 * 1.5 <= 4), and above etcd's ~2 s shortest lease.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 4, 1.0, 1.5


def _elections(members: Members, *names: str) -> list[Election]:
    deployment = f"election-{uuid.uuid4().hex[:8]}"
    return [Election(members.cluster(RETRY_TIMEOUT, first=name, name=deployment), name, TTL,
                     LOOP_WAIT, RETRY_TIMEOUT) for name in names]


def _aws_leads(members: Members) -> tuple[Election, Election, int]:
    """aws's controller takes the key, hetzner's follows (each asks its own member first)."""
    aws, hetzner = _elections(members, "aws", "hetzner")
    assert aws.run_cycle().startswith("aws took the leader key (token ")
    assert aws.token is not None
    assert hetzner.run_cycle() == f"hetzner follows aws (token {aws.token})"
    return aws, hetzner, aws.token


def _cycles_until(election: Election, condition: str, timeout: float) -> str:
    """Run ``election``'s cycle once a loop until it is the leader (or, with "follows", not)."""
    said = []

    def done() -> bool:
        said.append(election.run_cycle())
        return election.is_leader == (condition == "leads")

    wait_for(done, timeout=timeout, what=f"{election.name} to {condition}", retry_on=(),
             interval=LOOP_WAIT)
    return said[-1]


def test_one_leads_and_when_its_renewals_stop_the_other_takes_over_with_a_higher_token(
    members: Members,
) -> None:
    aws, hetzner, old = _aws_leads(members)
    assert hetzner.leader() == aws.leader() == Leader("aws", old)

    # Both run their loops for longer than a TTL: aws keeps the key, with one token.
    until = time.monotonic() + TTL + LOOP_WAIT

    def both_cycle() -> bool:
        assert aws.run_cycle().startswith(f"aws leads (token {old})")
        assert hetzner.run_cycle() == f"hetzner follows aws (token {old})"
        return time.monotonic() >= until

    wait_for(both_cycle, timeout=3 * TTL, what="a TTL of cycles", retry_on=(),
             interval=LOOP_WAIT)
    assert aws.is_leader and aws.token == old

    # aws's site goes dark: it renews no more. It knows it leads no longer before the key
    # can pass on, and hetzner takes the key once it expires.
    renewed = time.monotonic()
    said = _cycles_until(hetzner, "leads", timeout=TTL + 5 * LOOP_WAIT)
    took = time.monotonic()
    assert said.startswith("hetzner took the leader key (token ")
    assert not aws.is_leader and aws.token is None
    assert took - renewed >= TTL - MARGIN  # not before aws's lease could have lapsed
    assert hetzner.token is not None and hetzner.token > old

    # Back, aws learns that it was deposed, and by whom.
    assert aws.run_cycle() == f"aws no longer leads (token {old} is void): its lease expired"
    assert aws.leader() == Leader("hetzner", hetzner.token)
    assert aws.run_cycle() == f"aws follows hetzner (token {hetzner.token})"


def test_a_leader_rides_out_the_loss_of_one_etcd_member(members: Members) -> None:
    aws, hetzner, token = _aws_leads(members)
    members.kill("aws")  # the member aws's controller asks first
    try:
        until = time.monotonic() + 2 * TTL

        def cycles() -> bool:
            aws.run_cycle()
            said = hetzner.run_cycle()
            # A cycle may find no etcd leader for a moment (the survivors elect one), never
            # another controller's leadership.
            assert said == f"hetzner follows aws (token {token})" or \
                said.startswith("hetzner follows; who leads is unknown"), said
            return time.monotonic() >= until

        wait_for(cycles, timeout=4 * TTL, what="two TTLs of cycles", retry_on=(),
                 interval=LOOP_WAIT)
        assert aws.is_leader and aws.token == token, members.log_tails()
    finally:
        members.start("aws")


def test_a_resigning_leader_hands_over_at_the_next_cycle(members: Members) -> None:
    aws, hetzner, old = _aws_leads(members)
    assert aws.resign() == "aws resigned: the leader key is free"
    assert not aws.is_leader
    assert hetzner.run_cycle().startswith("hetzner took the leader key")
    assert hetzner.token is not None and hetzner.token > old
    assert aws.run_cycle() == f"aws follows hetzner (token {hetzner.token})"


def test_with_every_member_lost_no_one_leads_and_a_follower_says_so(members: Members) -> None:
    aws, hetzner, token = _aws_leads(members)
    members.kill(*members.layout.sites)
    try:
        said = _cycles_until(aws, "follows", timeout=TTL + 3 * RETRY_TIMEOUT)
        assert said.startswith("aws does not lead: it could not renew its key in time"), said
        assert aws.leader() is None
        said = hetzner.run_cycle()
        assert said.startswith("hetzner follows; who leads is unknown: etcd did not answer")
        assert "\n" not in said and hetzner.leader() is None
    finally:
        members.start(*members.layout.sites)
    # etcd keeps leases across a restart of the whole cluster, and its new leader gives
    # each a whole TTL again: aws's key is still there, and aws leads again with it.
    said = _cycles_until(aws, "leads", timeout=TTL + 3 * RETRY_TIMEOUT)
    assert said == f"aws leads (token {token}): its key is renewed"
    assert hetzner.run_cycle() == f"hetzner follows aws (token {token})"
