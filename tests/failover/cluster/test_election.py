"""The election's decisions, played by several controllers against one etcd double.

Time moves only by hand (``Clock``), so every instant is exact. The same
behaviour against real etcd members: test_election_in_lab.py.
"""

from __future__ import annotations

import pytest

from failover.cluster.config import MARGIN
from failover.cluster.election import LEADER_KEY, Election, Leader
from tests.failover.cluster.etcd_double import Clock, EtcdDouble, Link

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2.0, 4.0
SURE_FOR = TTL - LOOP_WAIT - MARGIN  # how long a leader trusts one renewal


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def etcd(clock: Clock) -> EtcdDouble:
    return EtcdDouble(clock)


def _election(etcd: EtcdDouble, name: str, link: Link | None = None) -> Election:
    return Election(link or etcd.link(), name, TTL, LOOP_WAIT, RETRY_TIMEOUT, clock=etcd.clock)


def _aws_leads(etcd: EtcdDouble, link: Link | None = None) -> tuple[Election, Election, int]:
    """aws's controller (through ``link``) takes the key, hetzner's follows; and the token."""
    aws, hetzner = _election(etcd, "aws", link), _election(etcd, "hetzner")
    aws.run_cycle()
    hetzner.run_cycle()
    assert aws.token is not None
    return aws, hetzner, aws.token


def test_the_first_to_look_takes_the_key_and_the_other_follows_it(etcd: EtcdDouble) -> None:
    aws, hetzner = _election(etcd, "aws"), _election(etcd, "hetzner")
    assert aws.leader() is None and not aws.is_leader and aws.token is None

    said = aws.run_cycle()
    assert said == f"aws took the leader key (token {aws.token})"
    assert aws.is_leader and aws.token == etcd.keys[LEADER_KEY].create_revision
    said = hetzner.run_cycle()
    assert said == f"hetzner follows aws (token {aws.token})"
    assert not hetzner.is_leader and hetzner.token is None
    assert hetzner.leader() == aws.leader() == Leader("aws", etcd.keys[LEADER_KEY].create_revision)


def test_a_leader_that_renews_every_loop_stays_the_leader_with_one_token(
    etcd: EtcdDouble, clock: Clock
) -> None:
    aws, hetzner, token = _aws_leads(etcd)
    for _ in range(20):  # forty seconds: four TTLs
        clock.advance(LOOP_WAIT)
        assert aws.is_leader  # between two renewals too: sure for more than a loop
        assert aws.run_cycle().startswith(f"aws leads (token {token})")
        assert hetzner.run_cycle() == f"hetzner follows aws (token {token})"
    assert aws.token == token


def test_a_leader_that_stops_renewing_knows_it_first_and_is_replaced_after_the_ttl(
    etcd: EtcdDouble, clock: Clock
) -> None:
    aws, hetzner, old = _aws_leads(etcd)
    # aws's site goes dark: it calls nothing more. It counts itself the leader only
    # until ttl - loop_wait - margin after its last renewal, without asking anyone.
    clock.advance(SURE_FOR - 0.01)
    assert aws.is_leader
    clock.advance(0.01)
    assert not aws.is_leader and aws.token is None and aws.leader() is None
    # The key outlives it until the TTL: hetzner follows until then...
    assert hetzner.run_cycle() == f"hetzner follows aws (token {old})"
    clock.advance(TTL - SURE_FOR - 0.01)
    assert hetzner.run_cycle() == f"hetzner follows aws (token {old})"
    # ...and takes the key after it, with a higher token.
    clock.advance(0.01)
    assert hetzner.run_cycle().startswith("hetzner took the leader key")
    assert hetzner.is_leader and hetzner.token is not None and hetzner.token > old
    # When aws is back, it learns it was deposed, and whom it follows.
    said = aws.run_cycle()
    assert said == f"aws no longer leads (token {old} is void): its lease expired"
    assert not aws.is_leader and aws.leader() == Leader("hetzner", hetzner.token)
    assert aws.run_cycle() == f"aws follows hetzner (token {hetzner.token})"


def test_a_leader_cut_off_from_etcd_steps_down_before_anyone_can_take_over(
    etcd: EtcdDouble, clock: Clock
) -> None:
    link = etcd.link()
    aws, hetzner, old = _aws_leads(etcd, link)
    link.cut = True
    led_until = took_at = None
    for _ in range(int(3 * TTL / 0.25)):  # a cycle each, a quarter second apart
        clock.advance(0.25)
        said = aws.run_cycle()
        hetzner.run_cycle()
        assert not (aws.is_leader and hetzner.is_leader), clock.now  # never two at once
        if aws.is_leader:
            led_until = clock.now
            assert said.startswith(f"aws leads (token {old}) but could not renew its key; "
                                   "sure of it for ")
        if hetzner.is_leader and took_at is None:
            took_at = clock.now
    assert led_until is not None and took_at is not None
    assert took_at - led_until >= LOOP_WAIT + MARGIN - 0.25  # a loop and the margin between
    assert said.startswith("aws does not lead: it could not renew its key in time")
    link.cut = False
    assert aws.run_cycle() == f"aws no longer leads (token {old} is void): its lease expired"


def test_a_renewal_that_fails_once_costs_nothing(etcd: EtcdDouble, clock: Clock) -> None:
    link = etcd.link()
    aws = _election(etcd, "aws", link)
    aws.run_cycle()
    token = aws.token
    clock.advance(LOOP_WAIT)
    link.cut = True
    assert aws.run_cycle().startswith(f"aws leads (token {token}) but could not renew")
    clock.advance(LOOP_WAIT)
    link.cut = False
    assert aws.run_cycle() == f"aws leads (token {token}), key renewed for {TTL}s"
    assert aws.is_leader and aws.token == token


def test_a_key_that_names_someone_else_deposes_the_leader_at_its_next_cycle(
    etcd: EtcdDouble, clock: Clock
) -> None:
    aws = _election(etcd, "aws")
    aws.run_cycle()
    old = aws.token
    intruder = etcd.link()
    intruder.delete(LEADER_KEY)  # by hand, say
    intruder.put(LEADER_KEY, "spare")
    clock.advance(LOOP_WAIT)
    assert aws.is_leader  # it cannot know before it looks
    said = aws.run_cycle()
    assert said == (f"aws no longer leads (token {old} is void): the leader key is spare's "
                    f"(token {etcd.keys[LEADER_KEY].create_revision})")
    assert not aws.is_leader and aws.leader() == Leader("spare", etcd.keys[LEADER_KEY]
                                                        .create_revision)
    assert not etcd.leases  # its lease, holding nothing, was revoked


def test_a_create_whose_answer_was_lost_is_found_to_be_ours_at_the_next_cycle(
    etcd: EtcdDouble, clock: Clock
) -> None:
    link = etcd.link()
    aws, hetzner = _election(etcd, "aws", link), _election(etcd, "hetzner")
    link.apply_then_fail = True
    assert aws.run_cycle().startswith("aws follows; whether it took the leader key is unknown")
    assert not aws.is_leader
    assert hetzner.run_cycle().startswith("hetzner follows aws")
    clock.advance(LOOP_WAIT)
    assert aws.run_cycle() == f"aws leads (token {etcd.keys[LEADER_KEY].create_revision}): " \
                              "its key is renewed"
    assert aws.is_leader


def test_a_restarted_controller_waits_out_its_former_lease(
    etcd: EtcdDouble, clock: Clock
) -> None:
    before = _election(etcd, "aws")
    before.run_cycle()
    old = before.token
    after = _election(etcd, "aws")  # the same site's controller, started again
    said = after.run_cycle()
    assert said.startswith(f"aws follows: the leader key names it, under a lease of an earlier "
                           f"life of it (token {old})")
    assert not after.is_leader
    clock.advance(TTL)
    assert after.run_cycle().startswith("aws took the leader key")
    assert after.token is not None and old is not None and after.token > old


def test_a_resigning_leader_frees_the_key_at_once(etcd: EtcdDouble) -> None:
    aws, hetzner, old = _aws_leads(etcd)
    assert aws.resign() == "aws resigned: the leader key is free"
    assert not aws.is_leader and LEADER_KEY not in etcd.keys
    assert hetzner.run_cycle().startswith("hetzner took the leader key")
    assert hetzner.token is not None and hetzner.token > old


def test_two_that_race_for_a_free_key_get_one_leader(etcd: EtcdDouble) -> None:
    aws, hetzner = _election(etcd, "aws"), _election(etcd, "hetzner")
    # hetzner looks first, sees the key free, and aws creates it before hetzner does.
    original = hetzner.cluster.get

    def get_then_lose_the_race(key: str) -> object:
        found = original(key)
        aws.run_cycle()
        return found

    hetzner.cluster.get = get_then_lose_the_race  # type: ignore[method-assign]
    said = hetzner.run_cycle()
    assert said == f"hetzner follows aws, which took the key first (token {aws.token})"
    assert aws.is_leader and not hetzner.is_leader
    assert set(etcd.leases) == {etcd.keys[LEADER_KEY].lease}  # the loser's lease was revoked


def test_a_follower_that_cannot_reach_etcd_says_who_leads_is_unknown(etcd: EtcdDouble) -> None:
    link = etcd.link()
    aws, hetzner = _election(etcd, "aws"), _election(etcd, "hetzner", link)
    aws.run_cycle()
    hetzner.run_cycle()
    link.cut = True
    assert hetzner.run_cycle().startswith("hetzner follows; who leads is unknown: etcd did not")
    assert hetzner.leader() is None


@pytest.mark.parametrize(("ttl", "loop_wait", "retry_timeout", "rule"), [
    (25, 10, 10, r"loop_wait \(10s\) \+ 2 \* retry_timeout \(10s\) must be at most ttl \(25s\)"),
    (30, 20, 5, r"ttl \(30s\) must be more than 2 \* loop_wait \(20s\) \+ 1s"),
])
def test_timing_that_could_leave_two_leaders_or_none_is_refused(
    etcd: EtcdDouble, ttl: int, loop_wait: float, retry_timeout: float, rule: str
) -> None:
    with pytest.raises(ValueError, match=rule):
        Election(etcd.link(), "aws", ttl, loop_wait, retry_timeout)
