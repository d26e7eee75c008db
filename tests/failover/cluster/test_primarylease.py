"""The engine's side of the primary's lease in etcd: withhold, wait until it lapsed, allow.

etcd is the in-memory double; the sites' agents are ``AgentDouble``s that
answer withholds and status as an agent with a cluster section does. Time
moves only by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from failover.cluster.election import LEADER_KEY
from failover.cluster.primarylease import (
    CLOCK_MARGIN,
    DECISION_KEY,
    HOLDER_KEY,
    TTL_ROUNDING,
    WITHHELD,
    WITHHOLD_KIND,
    EtcdLeases,
    decided,
)
from failover.exceptions import FailoverError, ProviderError, StaleToken
from tests.failover.cluster.etcd_double import Clock, EtcdDouble
from tests.failover.cluster.lease_double import LeaseLink, lease_link

TTL = 5


class AgentDouble:
    """A site's agent as the engine reaches it: its last vouch for each primary, its
    withholds, whether it is a peer of the others (``peer``), or no answer (``down``)."""

    def __init__(self, vouched: dict[str, float] | None = None, *, down: bool = False,
                 peer: bool = True) -> None:
        self.vouched = dict(vouched or {})  # primary: seconds its last vouch runs on
        self.down = down
        self.peer = peer
        self.withheld: list[dict[str, Any]] = []

    def _reach(self) -> None:
        if self.down:
            raise ProviderError("agent: no answer", provider="agent", code="UNREACHABLE")

    def run(self, kind: str, body: dict[str, Any] | None = None, *,
            timeout: float = 60.0) -> dict[str, Any]:
        self._reach()
        assert kind == WITHHOLD_KIND and body is not None
        self.withheld.append(body)
        return {"withheld": body["revision"], "peer": self.peer,
                "vouched": self.vouched.get(body["primary"])}

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        self._reach()
        return {"cluster": {"failsafe": {"on": True, "vouched": self.vouched}}}


@pytest.fixture
def etcd() -> EtcdDouble:
    """The double, on a clock of its own (``etcd.clock``)."""
    return EtcdDouble(Clock())


def leases(etcd: EtcdDouble, agents: dict[str, AgentDouble]) -> EtcdLeases:
    return EtcdLeases(lease_link(etcd), lambda: agents, clock=etcd.clock)


def aws_holds(etcd: EtcdDouble) -> int:
    """The decision names aws and aws's agent holds the lease; its etcd lease."""
    link: LeaseLink = lease_link(etcd)
    link.put(DECISION_KEY, "aws")
    lease = link.grant(TTL)
    link.create(HOLDER_KEY, "aws", lease)
    return lease


def test_withhold_takes_the_decision_and_tells_every_other_agent(etcd: EtcdDouble) -> None:
    aws_holds(etcd)
    granted = etcd.keys[DECISION_KEY].mod_revision
    agents = {"aws": AgentDouble(), "hetzner": AgentDouble(), "spare": AgentDouble(down=True)}
    leases(etcd, agents).withhold("aws")
    assert etcd.keys[DECISION_KEY].value == WITHHELD and decided(lease_link(etcd)) is None
    assert agents["hetzner"].withheld == [{"primary": "aws", "revision": granted}]
    assert agents["aws"].withheld == []  # not the site being replaced

    withheld_at = etcd.keys[DECISION_KEY].mod_revision
    leases(etcd, agents).withhold("aws")  # resumed: told again, the decision left withheld
    assert etcd.keys[DECISION_KEY].mod_revision == withheld_at
    # Up to the withheld decision's revision: still every grant aws ever had.
    assert agents["hetzner"].withheld[-1] == {"primary": "aws", "revision": withheld_at}


@pytest.mark.parametrize("answering", [None, AgentDouble(peer=False)])
def test_withhold_fails_when_no_peer_confirms_and_one_may_still_vouch(
    etcd: EtcdDouble, answering: AgentDouble | None
) -> None:
    aws_holds(etcd)
    agents = {"hetzner": AgentDouble(down=True)}
    if answering is not None:  # an agent that is no peer of aws: its withhold ends nothing
        agents["spare"] = answering
    with pytest.raises(FailoverError) as raised:
        leases(etcd, agents).withhold("aws")
    said = str(raised.value)
    assert said.startswith("no peer of aws confirmed it vouches no more for it")
    assert "hetzner: agent: no answer" in said and "fence aws" in said
    assert etcd.keys[DECISION_KEY].value == WITHHELD  # it still cannot renew


def test_withhold_needs_no_peer_when_every_agent_answered(etcd: EtcdDouble) -> None:
    aws_holds(etcd)  # no agent lists aws as a peer: none can vouch for it
    leases(etcd, {"hetzner": AgentDouble(peer=False)}).withhold("aws")
    assert etcd.keys[DECISION_KEY].value == WITHHELD


def test_withhold_leaves_a_decision_that_names_another_site(etcd: EtcdDouble) -> None:
    lease_link(etcd).put(DECISION_KEY, "hetzner")
    agents = {"hetzner": AgentDouble()}
    leases(etcd, agents).withhold("aws")
    assert etcd.keys[DECISION_KEY].value == "hetzner"
    assert agents["hetzner"].withheld == [
        {"primary": "aws", "revision": etcd.keys[DECISION_KEY].mod_revision}]


def test_the_lease_has_lapsed_once_its_hold_is_gone(etcd: EtcdDouble) -> None:
    clock = etcd.clock
    lease = aws_holds(etcd)
    engine = leases(etcd, {"hetzner": AgentDouble()})
    engine.withhold("aws")
    assert engine.lapsed_by("aws") == clock() + TTL + TTL_ROUNDING + CLOCK_MARGIN
    clock.advance(2.5)  # etcd counts down the lease: the answer stays put
    assert engine.lapsed_by("aws") == clock() + 2 + TTL_ROUNDING + CLOCK_MARGIN
    lease_link(etcd).revoke(lease)  # its agent fenced its server and let go
    assert engine.lapsed_by("aws") == clock()
    assert engine.lapsed_by("hetzner") == clock()  # never held one


def test_a_vouch_given_before_the_withhold_is_waited_out(etcd: EtcdDouble) -> None:
    clock = etcd.clock
    aws_holds(etcd)
    hetzner = AgentDouble({"aws": 4.0})
    engine = leases(etcd, {"hetzner": hetzner})
    engine.withhold("aws")
    etcd.keys.pop(HOLDER_KEY)  # its hold expired in etcd: only the vouch keeps it
    assert engine.lapsed_by("aws") == clock() + 4.0 + CLOCK_MARGIN
    hetzner.down = True  # what the withhold was told still counts
    assert engine.lapsed_by("aws") == clock() + 4.0 + CLOCK_MARGIN
    clock.advance(4.0 + CLOCK_MARGIN)
    assert engine.lapsed_by("aws") == clock()


def test_allow_names_the_promoted_site(etcd: EtcdDouble) -> None:
    aws_holds(etcd)
    engine = leases(etcd, {"hetzner": AgentDouble()})
    engine.withhold("aws")
    engine.allow("hetzner")
    assert decided(lease_link(etcd)) == "hetzner"


# -- the decision under a leader's token --------------------------------------------

def _leader(etcd: EtcdDouble, name: str) -> int:
    """``name`` takes the leader key (no other holds it now); its token."""
    link = lease_link(etcd)
    etcd.keys.pop(LEADER_KEY, None)
    link.create(LEADER_KEY, name, link.grant(TTL))
    return etcd.keys[LEADER_KEY].create_revision


def test_a_leaders_decisions_are_written_while_its_key_is_its_own(etcd: EtcdDouble) -> None:
    token = _leader(etcd, "aws")
    mine = EtcdLeases(lease_link(etcd), dict, clock=etcd.clock, token=lambda: token)
    assert mine.adopt("aws") and not mine.adopt("hetzner")  # a decision is there already
    mine.withhold("aws")
    assert etcd.keys[DECISION_KEY].value == WITHHELD
    mine.allow("hetzner")
    assert etcd.keys[DECISION_KEY].value == "hetzner"


def test_a_deposed_leaders_withhold_and_allow_change_nothing(etcd: EtcdDouble) -> None:
    old = _leader(etcd, "spare")
    deposed = EtcdLeases(lease_link(etcd), dict, clock=etcd.clock, token=lambda: old)
    deposed.adopt("aws")
    new = _leader(etcd, "hetzner")  # spare's key expired while it was frozen
    assert new > old
    # Thawed long after, its run goes on where it was: it would withhold aws's lease.
    with pytest.raises(StaleToken, match=f"token {old} is older than {new}"):
        deposed.withhold("aws")
    with pytest.raises(StaleToken):
        deposed.allow("hetzner")
    assert etcd.keys[DECISION_KEY].value == "aws"
    etcd.keys.pop(LEADER_KEY)  # no one leads
    with pytest.raises(StaleToken, match="no longer leads"):
        deposed.allow("hetzner")
    assert etcd.keys[DECISION_KEY].value == "aws"
