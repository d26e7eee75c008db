"""Never two primaries, from the controller's side: the lease it keeps, the fences it sends.

The controller renews the lease of the site it holds to be the primary
(``failover.lease``): a primary that stops hearing from it fences itself. It
also fences at once, through its agent, any other site it sees answering as a
primary. When the controller stops on purpose it turns the lease off instead
of letting it lapse: moves are then made by hand, and a lapse would fence a
healthy primary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from failover.engine.deployment import Deployment
from failover.engine.executor import one_line
from failover.exceptions import FailoverError
from failover.lease import LeaseKeeper
from failover.logs import log_event

log = logging.getLogger("failover.watch")
FENCE_AGAIN_AFTER = 5.0  # seconds before a second primary is fenced again


class PrimaryGuard:
    """The controller's lease keeper and second-primary fencer for one deployment."""

    def __init__(self, deployment: Deployment, holder: Callable[[], str | None]) -> None:
        self.deployment = deployment
        config = deployment.config.watch
        self.leases: LeaseKeeper | None = None
        # Agents that hold the lease in etcd need no controller's renewals.
        if config.lease_seconds and not (config.cluster and config.cluster.agent_leases):
            self.leases = LeaseKeeper(deployment.lease_book, self._renew, self._answers, holder,
                                      seconds=config.lease_seconds,
                                      every=config.lease_renew_every)
        self._fenced_at = -FENCE_AGAIN_AFTER

    def start(self) -> None:
        """Begin renewing (when leases are on)."""
        if self.leases is not None:
            self.leases.start()

    def _renew(self, site: str, expires_at: float, timeout: float) -> None:
        agent = self.deployment.agent(site)
        if agent is None:
            raise FailoverError(f"site {site} has no agent to hold its lease")
        said = agent.renew_lease(expires_at, timeout=timeout)
        if said.get("self_fenced") and self._sole_primary(site):
            agent.renew_lease(expires_at, timeout=timeout, unfence=True)
            log_event(log, "lease.regained", site=site, detail="no other site answers as an "
                      "unfenced primary: its own fence lifted")

    def _sole_primary(self, site: str) -> bool:
        """Whether no other site answers as an unfenced primary (asked now, not remembered)."""
        topology = self.deployment.observe()
        others = [p for p in topology.primaries if p != site]
        if others:
            log_event(log, "lease.regained", site=site, outcome="refused",
                      detail=f"{', '.join(others)} answers as an unfenced primary: {site} "
                      "stays fenced")
        return not others

    def _answers(self, site: str, timeout: float) -> None:
        agent = self.deployment.agent(site)
        if agent is None:
            raise FailoverError(f"site {site} has no agent")
        agent.status(timeout=timeout)

    def stop(self, *, turn_off: bool = True) -> None:
        """Stop renewing and, with ``turn_off``, turn the primary's lease off (a lone
        controller stopping on purpose; one of a cluster leaves it to the next leader)."""
        if self.leases is None:
            return
        self.leases.stop()
        if not turn_off:
            return
        held = self.leases.held
        agent = None if held is None else self.deployment.agent(held)
        if agent is None:
            return
        try:
            agent.release_lease(timeout=3)
        except FailoverError as exc:
            log_event(log, "lease.release", site=held, outcome="failed", detail=one_line(exc))
            return
        log_event(log, "lease.release", site=held, outcome="off")

    def fence_second_primary(self) -> None:
        """Two sites answered as primary: fence the older one, from a thread.

        Asked afresh (a fenced primary is none), and told apart by timeline: a
        promote starts a new one, so the primary on the older timeline is the
        one that was replaced. When they cannot be told apart, nothing is
        fenced and the log says so: fencing the wrong one stops the service.
        """
        now = time.monotonic()
        if now - self._fenced_at < FENCE_AGAIN_AFTER:
            return
        self._fenced_at = now
        threading.Thread(target=self._fence_older, name="fence-second", daemon=True).start()

    def _fence_older(self) -> None:
        primaries = self.deployment.observe().primaries
        if len(primaries) < 2:
            return
        timelines: dict[str, int] = {}
        for site in primaries:
            agent = self.deployment.agent(site)
            try:
                timeline = None if agent is None else agent.status(timeout=2).get("timeline")
            except FailoverError:
                timeline = None
            if isinstance(timeline, int):
                timelines[site] = timeline
        newest = max(timelines.values(), default=None)
        keep = [s for s, t in timelines.items() if t == newest]
        if len(timelines) < len(primaries) or len(keep) != 1:
            log_event(log, "watch.second_primary", sites=",".join(primaries),
                      outcome="cannot tell which is older: fence one by hand")
            return
        for site in primaries:
            if site == keep[0]:
                continue
            agent = self.deployment.agent(site)
            assert agent is not None  # it told its timeline
            try:
                said = agent.fence(f"a second primary beside {keep[0]}", timeout=10)
            except FailoverError as exc:
                log_event(log, "watch.second_primary", site=site, outcome="failed",
                          detail=one_line(exc))
                continue
            log_event(log, "watch.second_primary", site=site, primary=keep[0],
                      outcome="fenced", terminated=said.get("terminated"))
