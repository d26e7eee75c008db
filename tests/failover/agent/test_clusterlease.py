"""The agent's hold on the primary's lease in etcd: each cycle's decision, on doubles.

etcd is the in-memory double (``EtcdDouble``, a ``LeaseLink`` per agent that a
test can cut); the agent's lease and fence are ``HoldingDouble``; the peers'
answers are ``FailsafeDouble``. Time moves only by hand. The same behaviour
with real etcd members and real agents: test_clusterlease_in_lab.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failover.agent.clusterlease import ClusterLease
from failover.agent.failsafe import Answer, Round
from failover.agent.journal import AgentJournal
from failover.cluster.config import MARGIN
from failover.cluster.primarylease import DECISION_KEY, HOLDER_KEY, WITHHELD
from tests.failover.cluster.etcd_double import Clock, EtcdDouble
from tests.failover.cluster.lease_double import LeaseLink, lease_link

TTL = 9  # renewed every 3 s
SURE_FOR = TTL - MARGIN


class HoldingDouble:
    """The agent's lease and fence as a cycle sees them: an end on the test's clock.

    Its watch is played as the agent's: a lease found lapsed is fenced at once.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.until: float | None = None  # None: off
        self.fenced = False
        self.lifted = 0

    def _watch(self) -> None:
        if self.until is not None and self.until <= self.clock():
            self.fenced = True

    def left(self) -> float | None:
        self._watch()
        return None if self.until is None else self.until - self.clock()

    def hold(self, until: float, *, unfence: bool) -> bool:
        self._watch()
        self.until = until
        if unfence and self.fenced:
            self.fenced = False
            self.lifted += 1
            return True
        return False

    def lapse(self) -> None:
        if self.until is not None:
            self.until = min(self.until, self.clock())
        self._watch()

    def settled(self) -> bool:
        self._watch()
        return self.until is None or self.fenced

    @property
    def held(self) -> bool:
        left = self.left()
        return left is not None and left > 0


class FailsafeDouble:
    """The peers' answers to a round, set by the test; every round asked is kept."""

    def __init__(self, **vouch: bool) -> None:
        self.vouch = vouch
        self.asked: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any], timeout: float) -> Round:
        self.asked.append(body)
        return Round(tuple(Answer(site, said, "" if said else "it said no")
                           for site, said in sorted(self.vouch.items())))


@pytest.fixture
def etcd() -> EtcdDouble:
    """The double, on a clock of its own."""
    return EtcdDouble(Clock())


@pytest.fixture
def clock(etcd: EtcdDouble) -> Clock:
    """The double's clock, which the agents' cycles read too."""
    return etcd.clock


Agent = tuple[ClusterLease, HoldingDouble, LeaseLink]
MakeAgent = Callable[..., Agent]


@pytest.fixture
def agent(etcd: EtcdDouble, tmp_path: Path) -> MakeAgent:
    """Make a site's agent (its hold, its lease double, its link to etcd)."""
    journals: dict[str, AgentJournal] = {}

    def make(site: str, failsafe: FailsafeDouble | None = None) -> Agent:
        journal = journals.setdefault(site, AgentJournal(tmp_path / site / "agent.sqlite"))
        holding, link = HoldingDouble(etcd.clock), lease_link(etcd)
        return ClusterLease(link, site, TTL, holding, journal, failsafe=failsafe,
                            clock=etcd.clock, sleep=etcd.clock.advance), holding, link

    return make


def decide(etcd: EtcdDouble, site: str) -> None:
    """The leading controller's decision: ``site`` may hold the primary's lease."""
    lease_link(etcd).put(DECISION_KEY, site)


def test_the_site_the_decision_names_holds_the_lease_and_a_standby_never(
    agent: MakeAgent, etcd: EtcdDouble, clock: Clock
) -> None:
    decide(etcd, "aws")
    aws, aws_lease, _ = agent("aws")
    hetzner, hetzner_lease, _ = agent("hetzner")
    for _ in range(10):  # thirty seconds, more than three TTLs
        assert aws.step().state == "held"
        assert aws_lease.until == clock() + SURE_FOR
        assert hetzner.step().state == "off"
        assert hetzner_lease.until is None and hetzner.lease is None
        hold = etcd.keys[HOLDER_KEY]
        assert hold.value == "aws" and hold.lease == aws.lease
        clock.advance(aws.every)
    assert not aws_lease.fenced


def test_two_agents_never_both_hold_it_when_the_decision_moves(
    agent: MakeAgent, etcd: EtcdDouble, clock: Clock
) -> None:
    decide(etcd, "aws")
    aws, aws_lease, _ = agent("aws")
    hetzner, hetzner_lease, _ = agent("hetzner")
    aws.step()
    old = aws.lease
    decide(etcd, "hetzner")  # a promote of hetzner
    said = hetzner.step()
    assert said.state == "waiting" and "aws's" in said.sentence
    assert not hetzner_lease.held and aws_lease.held  # still aws's until it looks again

    said = aws.step()
    assert said.state == "released" and f"etcd lease {old:x} revoked" in said.sentence
    assert aws_lease.fenced and not aws_lease.held and HOLDER_KEY not in etcd.keys
    assert hetzner.step().state == "held"
    assert hetzner_lease.held and not aws_lease.held
    assert etcd.keys[HOLDER_KEY].value == "hetzner"


def test_a_withheld_decision_fences_the_holder_and_frees_the_hold(
    agent: MakeAgent, etcd: EtcdDouble
) -> None:
    decide(etcd, "aws")
    aws, aws_lease, _ = agent("aws")
    aws.step()
    lease_link(etcd).put(DECISION_KEY, WITHHELD)
    said = aws.step()
    assert "a promote is replacing one" in said.sentence
    assert aws_lease.fenced and aws.lease is None and HOLDER_KEY not in etcd.keys
    assert aws.step().state == "off"  # and it takes nothing back on its own


def test_without_failsafe_a_holder_cut_off_from_etcd_fences_at_the_leases_end(
    agent: MakeAgent, etcd: EtcdDouble, clock: Clock
) -> None:
    decide(etcd, "aws")
    aws, aws_lease, link = agent("aws")
    aws.step()
    end = aws_lease.until
    link.cut = True
    while clock() + aws.every < SURE_FOR + 1000.0:
        clock.advance(aws.every)
        said = aws.step()
        assert said.state == "lapsing" and "failsafe off" in said.sentence
        assert aws_lease.until == end and not aws_lease.fenced
    clock.advance(aws.every)
    assert aws.step().state == "unreachable"
    assert aws_lease.fenced


@pytest.mark.parametrize(("vouch", "kept"), [
    ({"hetzner": True, "gcp": True}, True),  # every peer vouches
    ({"hetzner": True, "gcp": False}, False),  # some
    ({"hetzner": False, "gcp": False}, False),  # none
    ({}, False),  # no peer: nothing vouches
])
def test_failsafe_keeps_the_lease_only_while_every_peer_vouches(
    agent: MakeAgent, etcd: EtcdDouble, clock: Clock, vouch: dict[str, bool], kept: bool
) -> None:
    decide(etcd, "aws")
    peers = FailsafeDouble(**vouch)
    aws, aws_lease, link = agent("aws", peers)
    aws.step()
    revision = etcd.keys[DECISION_KEY].mod_revision
    link.cut = True
    for _ in range(10):  # thirty seconds without etcd
        clock.advance(aws.every)
        said = aws.step()
        if not aws_lease.held:
            break
        assert said.state == ("failsafe" if kept else "lapsing"), said
    assert aws_lease.held is kept and aws_lease.fenced is not kept
    assert peers.asked[0] == {"primary": "aws", "revision": revision, "ttl": TTL}
    if kept:
        assert aws_lease.until == clock() + SURE_FOR


def test_failsafe_never_lifts_a_fence_and_etcd_back_gives_the_lease_back(
    agent: MakeAgent, etcd: EtcdDouble, clock: Clock
) -> None:
    decide(etcd, "aws")
    peers = FailsafeDouble(hetzner=False)
    aws, aws_lease, link = agent("aws", peers)
    aws.step()
    link.cut = True
    clock.advance(TTL)  # the lease ran out: fenced
    assert aws.step().state == "unreachable" and aws_lease.fenced
    peers.vouch["hetzner"] = True
    asked = len(peers.asked)
    clock.advance(aws.every)
    assert aws.step().state == "unreachable" and aws_lease.fenced
    assert len(peers.asked) == asked  # a lapsed lease asks no one

    link.cut = False  # etcd answers again; its lease expired there meanwhile
    said = aws.step()
    assert said.state == "held" and "lifted its own fence" in said.sentence
    assert not aws_lease.fenced and aws_lease.lifted == 1
    assert etcd.keys[HOLDER_KEY].lease == aws.lease


def test_a_restarted_agent_renews_the_lease_it_noted_and_holds_at_once(
    agent: MakeAgent, etcd: EtcdDouble
) -> None:
    decide(etcd, "aws")
    aws, _, _ = agent("aws")
    aws.step()
    again, lease, _ = agent("aws")  # the same journal: a restart
    assert again.lease == aws.lease
    assert again.step().state == "held" and lease.held
    assert etcd.keys[HOLDER_KEY].lease == aws.lease


def test_an_earlier_lives_hold_is_waited_out_when_its_lease_was_not_noted(
    agent: MakeAgent, etcd: EtcdDouble, clock: Clock, tmp_path: Path
) -> None:
    decide(etcd, "aws")
    aws, _, _ = agent("aws")
    aws.step()
    old = aws.lease
    assert old is not None
    AgentJournal(tmp_path / "aws" / "agent.sqlite").set("cluster.lease", None)
    again, lease, _ = agent("aws")
    said = again.step()
    assert said.state == "waiting" and f"aws's (etcd lease {old:x})" in said.sentence
    assert not lease.held
    clock.advance(TTL)  # the old life's lease runs out unrenewed
    assert again.step().state == "held" and lease.held and again.lease != old
