"""The failsafe rounds: who vouches, what a withhold stops, and the round over real HTTP.

Two agents whose databases are down are served in process (aws and
hetzner, a cluster section each, never begun: no cycle runs); a round goes
from one to the other signed with the secret they share. What decides a
vouch is also driven directly, with the local server's role as a double.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.agent.agent import Agent
from failover.agent.client import AgentClient
from failover.agent.config import AgentConfig, ClusterSpec
from failover.agent.failsafe import (
    FAILSAFE_PATH,
    WITHHOLD_KIND,
    Answer,
    BadVouchRequest,
    Round,
    Vouches,
    ask_peers,
)
from failover.agent.journal import AgentJournal
from failover.agent.server import AgentServer
from failover.exceptions import FailoverError, ProviderError
from failover.secretfiles import write_private
from tests.conftest import free_port
from tests.failover.agent.served import SECRET, Served, agent_config

PEER_SECRET = b"agents-peer-secret-5e1d0b77"


class RoleDouble:
    """The local server's answer to "could you serve writes?", set by the test."""

    def __init__(self) -> None:
        self.why: str | None = None  # None: a standby

    def __call__(self) -> str | None:
        return self.why


@pytest.fixture
def role() -> RoleDouble:
    return RoleDouble()


class Clock:
    """Unix seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vouches(tmp_path: Path, role: RoleDouble, clock: Clock) -> Vouches:
    return Vouches(AgentJournal(tmp_path / "agent.sqlite"), "hetzner", ["aws", "gcp"], role,
                   clock=clock)


def test_a_standby_vouches_and_a_primary_or_a_stranger_does_not(
    vouches: Vouches, role: RoleDouble, clock: Clock
) -> None:
    assert vouches.answer({"primary": "aws", "revision": 7, "ttl": 5}) == {"vouch": True}
    assert vouches.vouched("aws") == 5.0  # the round's TTL, from when it was answered
    clock.now += 1.5
    assert vouches.status() == {"vouched": {"aws": 3.5}, "withheld": {}}
    clock.now += 3.5
    assert vouches.vouched("aws") is None and vouches.status()["vouched"] == {}  # run out
    said = vouches.answer({"primary": "azure", "revision": 7, "ttl": 5})
    assert said == {"vouch": False,
                    "why": "azure is not a peer of hetzner's agent (its cluster.peers)"}
    role.why = "its server is a primary"
    assert vouches.answer({"primary": "gcp", "revision": 7, "ttl": 5}) == {
        "vouch": False, "why": "its server is a primary"}
    assert vouches.vouched("gcp") is None  # no vouch given, none recorded


def test_a_withhold_refuses_grants_up_to_its_revision_and_says_what_runs_on(
    vouches: Vouches, clock: Clock
) -> None:
    assert vouches.withhold({"primary": "aws", "revision": 7}) == {
        "withheld": 7, "peer": True, "vouched": None}
    said = vouches.answer({"primary": "aws", "revision": 7, "ttl": 5})
    assert said["vouch"] is False and "a promote replaces aws" in said["why"]
    assert vouches.vouched("aws") is None
    # A later grant to aws (a controller made it the primary again) is vouched for.
    assert vouches.answer({"primary": "aws", "revision": 9, "ttl": 5}) == {"vouch": True}
    clock.now += 2.0
    left = vouches.withhold({"primary": "aws", "revision": 5})  # never lowers the floor
    assert left["withheld"] == 7 and left["vouched"] == 3.0  # what the vouch has left
    assert vouches.status()["withheld"] == {"aws": 7}


@pytest.mark.parametrize(("body", "said"), [
    ({"revision": 1, "ttl": 5}, "primary must be a site's name"),
    ({"primary": "aws", "revision": -1, "ttl": 5}, "revision must be a whole number from 0"),
    ({"primary": "aws", "revision": 1, "ttl": True}, "ttl must be a whole number from 1"),
])
def test_a_bad_round_is_refused(vouches: Vouches, body: dict[str, object], said: str) -> None:
    with pytest.raises(BadVouchRequest, match=said):
        vouches.answer(body)


def test_a_round_vouches_only_when_every_peer_does() -> None:
    def ask(site: str, body: dict[str, object], timeout: float) -> dict[str, object]:
        if site == "gone":
            raise FailoverError("agent of gone: no answer")
        return {"vouch": site == "yes", "why": f"{site} says no"}

    assert ask_peers({"yes": ask}, {}, 1.0).vouched
    both = ask_peers({"yes": ask, "no": ask}, {}, 1.0)
    assert not both.vouched
    assert both.sentence() == "no did not (no says no); yes vouched"
    assert ask_peers({"yes": ask, "gone": ask}, {}, 1.0).answers[0] == Answer(
        "gone", False, "agent of gone: no answer")
    assert not ask_peers({}, {}, 1.0).vouched and Round(()).sentence() == "no peer to ask"


# -- two agents in process ------------------------------------------------------------


def _clustered(home: Path, site: str, peer: str, peer_url: str) -> AgentConfig:
    secret = home.parent / "peers.secret"
    if not secret.exists():
        write_private(secret, PEER_SECRET.decode() + "\n")
    config = agent_config(home, free_port())
    return config.model_copy(update={"site": site, "cluster": ClusterSpec(
        endpoints=["http://127.0.0.1:9"], ttl=9, retry_timeout=0.5, failsafe_timeout=1.0,
        peers={peer: peer_url}, peer_secret_file=secret)})


def _serve(agent: Agent) -> tuple[AgentServer, threading.Thread]:
    server = AgentServer(agent)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    """aws's and hetzner's agents, each the other's peer, served in process."""
    aws_port, hetzner_port = free_port(), free_port()
    urls = {"aws": f"http://127.0.0.1:{aws_port}", "hetzner": f"http://127.0.0.1:{hetzner_port}"}
    aws = Agent(_clustered(tmp_path / "aws", "aws", "hetzner", urls["hetzner"]).model_copy(
        update={"listen": f"127.0.0.1:{aws_port}"}))
    hetzner = Agent(_clustered(tmp_path / "hetzner", "hetzner", "aws", urls["aws"]).model_copy(
        update={"listen": f"127.0.0.1:{hetzner_port}"}))
    running = [_serve(aws), _serve(hetzner)]
    try:
        yield Served(aws, urls["aws"]), Served(hetzner, urls["hetzner"])
    finally:
        for server, thread in running:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        aws.shutdown()
        hetzner.shutdown()


def test_a_round_between_two_agents_vouches_only_for_a_standby(
    pair: tuple[Served, Served]
) -> None:
    aws, hetzner = pair
    assert aws.agent.cluster is not None and hetzner.agent.cluster is not None
    body = {"primary": "aws", "revision": 3, "ttl": 9}
    round_ = aws.agent.cluster._round(body, 2.0)
    assert not round_.vouched  # hetzner's server is down on a primary's data
    assert "would start as a primary" in round_.answers[0].why
    (hetzner.agent.config.postgres.data_dir / "standby.signal").parent.mkdir(parents=True)
    (hetzner.agent.config.postgres.data_dir / "standby.signal").touch()
    asked = time.time()
    round_ = aws.agent.cluster._round(body, 2.0)
    assert round_.vouched and round_.answers == (Answer("hetzner", True),)
    status = hetzner.client().status()
    # The vouch runs for the round's TTL from its answer, which came between the two reads.
    assert 9.0 - (time.time() - asked) <= status["cluster"]["failsafe"]["vouched"]["aws"] <= 9.0
    assert status["cluster"]["failsafe"]["on"] is True


def test_a_round_needs_the_peers_secret_and_the_controllers_needs_its_own(
    pair: tuple[Served, Served]
) -> None:
    _, hetzner = pair
    body = {"primary": "aws", "revision": 3, "ttl": 9}
    with pytest.raises(ProviderError) as refused:
        hetzner.client(SECRET).request("POST", FAILSAFE_PATH, body)
    assert refused.value.code == "forged-answer"  # answered with the peers' secret: not ours
    peer = AgentClient(hetzner.url, PEER_SECRET, site="hetzner")
    try:
        with pytest.raises(ProviderError) as refused:
            peer.status()  # the peers' secret asks, it does not command
    finally:
        peer.close()
    assert refused.value.code == "forged-answer"


def test_an_agent_without_the_peers_secret_answers_no_round(served: Served) -> None:
    with pytest.raises(ProviderError, match="answers no failsafe round") as refused:
        served.client().request("POST", FAILSAFE_PATH, {"primary": "gcp"})
    assert refused.value.code == "not-found"


def test_an_agent_that_holds_its_lease_in_etcd_refuses_a_controllers_renewal(
    pair: tuple[Served, Served]
) -> None:
    aws, _ = pair
    client = aws.client()
    try:
        with pytest.raises(ProviderError, match="holds the primary's lease in etcd"):
            client.renew_lease(10**10)
        said = client.run(WITHHOLD_KIND, {"primary": "hetzner", "revision": 4})
    finally:
        client.close()
    assert said == {"withheld": 4, "peer": True, "vouched": None}
    assert aws.agent.lease.view().state == "off"


def test_an_agent_without_a_cluster_never_vouched(served: Served) -> None:
    client = served.client()
    try:
        said = client.run(WITHHOLD_KIND, {"primary": "hetzner", "revision": 4})
    finally:
        client.close()
    assert said == {"withheld": None, "peer": False, "vouched": None}
    assert "cluster" not in served.agent.status()
