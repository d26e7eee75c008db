"""An agent's part in the etcd cluster: its hold on the primary's lease, and its vouches.

Built only for an agent whose config has ``cluster`` (etcd's client and the
peers' clients are loaded only then). The hold drives the agent's own
``Lease`` through the code path a controller's renewals take
(``Agent.renew_lease``), so a lease that lapses fences the server exactly as
before; the vouches answer other primaries' failsafe rounds.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from failover.agent.client import AgentClient
from failover.agent.clusterlease import ClusterLease
from failover.agent.config import ClusterSpec
from failover.agent.failsafe import FAILSAFE_PATH, WITHHOLD_KIND, Round, Vouches, ask_peers
from failover.agent.pghost import PgHost
from failover.agent.protocol import agent_secret
from failover.cluster.etcd import EtcdCluster
from failover.exceptions import FailoverError

if TYPE_CHECKING:
    from failover.agent.agent import Agent

Body = dict[str, Any]


class LeaseFromEtcd(FailoverError):
    """A controller's renewal sent to an agent that holds its lease in etcd."""


class AgentHolding:
    """``clusterlease.Holding`` over the agent's lease (CLOCK_MONOTONIC, as the cycle's)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def left(self) -> float | None:
        """Seconds the lease has left (negative: lapsed); None when off."""
        return self._agent.lease.view().expires_in

    def hold(self, until: float, *, unfence: bool) -> bool:
        """Renew the agent's lease until ``until``; True when it lifted its own fence."""
        left = until - time.monotonic()
        if left <= 0:
            return False
        said = self._agent.renew_lease({"expires_at": time.time() + left, "unfence": unfence})
        return bool(said.get("regained"))

    def lapse(self) -> None:
        """The lease ends now: the agent's watch fences the server."""
        self._agent.lease.end()

    def settled(self) -> bool:
        """Whether the lease is no longer held and its lapse was acted on."""
        state = self._agent.lease.view().state
        return state == "off" or (state == "lapsed" and self._agent.journal.setting(
            "self_fenced") in ("yes", "other"))


def not_standby(host: PgHost) -> str | None:
    """Why this host could serve writes as a primary now, or None when it could not."""
    try:
        with host.connect(timeout=1) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        if host.is_standby_dir():
            return None
        return "its server does not answer, and its data would start as a primary"
    return None if row is not None and row[0] else "its server is a primary"


class AgentCluster:
    """The agent's hold on the primary's lease, its vouches, and the peers it asks."""

    def __init__(self, agent: Agent, spec: ClusterSpec) -> None:
        self.spec = spec
        site = agent.config.site
        self.peer_secret = (None if spec.peer_secret_file is None
                            else agent_secret(spec.peer_secret_file))
        self.vouches = Vouches(agent.journal, site, list(spec.peers),
                               partial(not_standby, agent.host))
        self._peers: dict[str, AgentClient] = {}
        if self.peer_secret is not None:
            self._peers = {name: AgentClient(url, self.peer_secret, site=name,
                                             timeout=spec.failsafe_timeout)
                           for name, url in spec.peers.items()}
        store = EtcdCluster(spec.endpoints, spec.name, spec.retry_timeout)
        self.lease = ClusterLease(store, site, spec.ttl, AgentHolding(agent), agent.journal,
                                  failsafe=self._round if spec.failsafe and self._peers
                                  else None, failsafe_timeout=spec.failsafe_timeout)

    def _round(self, body: Body, timeout: float) -> Round:
        return ask_peers({name: self._ask for name in self._peers}, body, timeout)

    def _ask(self, site: str, body: Body, timeout: float) -> Body:
        return dict(self._peers[site].request("POST", FAILSAFE_PATH, body, timeout=timeout)[1])

    def handlers(self) -> dict[str, Any]:
        """The operations that change with a cluster: no controller renewals; withholds."""
        return {"lease": self._refuse_renewal, WITHHOLD_KIND: self.vouches.withhold}

    def _refuse_renewal(self, _body: Body) -> Body:
        raise LeaseFromEtcd(f"agent {self.vouches.site} holds the primary's lease in etcd (its "
                            "config's cluster section): a controller does not renew it")

    def answer(self, body: Body) -> Body:
        """A peer's failsafe round: vouch or say why not."""
        return self.vouches.answer(body)

    def status(self) -> Body:
        """For the agent's status."""
        return {**self.lease.status(),
                "failsafe": {"on": self.lease.failsafe_on, **self.vouches.status()}}

    def close(self) -> None:
        """Close the peers' connections."""
        for client in self._peers.values():
            client.close()
