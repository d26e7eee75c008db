"""Which controller acts: a lone one always, or the one elected on the cluster.

With ``watch.cluster`` one controller runs at each site (``failover watch
--site SITE``) and all of them probe, hear notices and serve their API; only
the elected leader decides and acts (``failover.cluster.election``). A
follower takes over when the leader's key expires: its probes are warm, and
the journal, the store and the run lock are in etcd, so it resumes a move the
old leader left half done on its first cycle.

The fencing token the controller's requests carry is the token of the last
leadership it held, not only of one it still holds: a leader deposed while a
step of its run was under way sends that step's next request with its old
token, and the agent (or the journal) refuses it, instead of taking a request
without any token as a lone controller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from failover.cluster.config import ClusterConfig
from failover.cluster.election import Election
from failover.logs import log_event
from failover.state import cluster_client

log = logging.getLogger("failover.watch")


class Alone:
    """A controller without a cluster: it always leads, and carries no token."""

    alone = True
    name: str | None = None
    leading = True
    token: int | None = None
    changed: Callable[[], None] = staticmethod(lambda: None)  # its leadership never changes

    def leader(self) -> str | None:
        """No election: no leader to name."""
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Nothing to renew."""
        await stop.wait()

    def resign(self) -> None:
        """Nothing to give up."""

    def status(self) -> dict[str, Any] | None:
        """Nothing for ``/v1/status``."""
        return None


class Elected:
    """One controller's part in the cluster: an election cycle every ``loop_wait`` seconds."""

    alone = False

    def __init__(self, config: ClusterConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.election = Election(cluster_client(config), name, config.ttl, config.loop_wait,
                                 config.retry_timeout)
        self.changed: Callable[[], None] = lambda: None  # called when it starts or stops leading
        self._held: int | None = None
        self._was_leading = False
        self.sentence = f"{name} has not looked at the leader key yet"

    @property
    def leading(self) -> bool:
        """Whether this controller surely leads now (and for a loop more)."""
        return self.election.is_leader

    @property
    def token(self) -> int | None:
        """The token of the leadership held now, else of the last one (None: it never led);
        see the module."""
        current = self.election.token
        return self._held if current is None else current

    def leader(self) -> str | None:
        """The leading controller's site, as last seen; None: no one, or unknown."""
        seen = self.election.leader()
        return None if seen is None else seen.name

    def cycle(self) -> str:
        """One election cycle (blocking: it talks to etcd); what it said."""
        sentence = self.election.run_cycle()
        if (token := self.election.token) is not None:
            self._held = token
        leading = self.election.is_leader
        if sentence != self.sentence:
            log_event(log, "watch.election", controller=self.name, sentence=sentence)
            self.sentence = sentence
        if leading != self._was_leading:
            self._was_leading = leading
            self.changed()
        return sentence

    async def run(self, stop: asyncio.Event) -> None:
        """Run a cycle every ``loop_wait`` until ``stop``; then give the key up."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.cycle)
            except Exception as exc:  # an answer not understood: the next cycle tries again
                log_event(log, "watch.election", controller=self.name, outcome="error",
                          detail=" ".join(f"{type(exc).__name__}: {exc}".split())[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.loop_wait)

    def resign(self) -> None:
        """Give the key up, so that a follower need not wait the TTL (a controller stopped
        on purpose)."""
        if self.election.is_leader:
            log_event(log, "watch.election", controller=self.name,
                      sentence=self.election.resign())

    def status(self) -> dict[str, Any]:
        """The cluster as ``/v1/status`` shows it."""
        leader = self.leader()
        return {"name": self.name, "leader": leader, "leading": self.leading,
                "token": self.election.token if self.leading else (
                    None if (seen := self.election.leader()) is None else seen.token),
                "leader_api": None if leader is None else self.config.controllers.get(leader),
                "sentence": self.sentence}


Leadership = Alone | Elected
