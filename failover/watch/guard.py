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
        if config.lease_seconds:
            self.leases = LeaseKeeper(deployment.lease_book, self._renew, self._answers, holder,
                                      seconds=config.lease_seconds,
                                      every=config.lease_renew_every)
        self._fenced_at: dict[str, float] = {}

    def start(self) -> None:
        """Begin renewing (when leases are on)."""
        if self.leases is not None:
            self.leases.start()

    def _renew(self, site: str, expires_at: float, timeout: float) -> None:
        agent = self.deployment.agent(site)
        if agent is None:
            raise FailoverError(f"site {site} has no agent to hold its lease")
        agent.renew_lease(expires_at, timeout=timeout)

    def _answers(self, site: str, timeout: float) -> None:
        agent = self.deployment.agent(site)
        if agent is None:
            raise FailoverError(f"site {site} has no agent")
        agent.status(timeout=timeout)

    def stop(self) -> None:
        """Stop renewing and turn the primary's lease off (a controller stopping on purpose)."""
        if self.leases is None:
            return
        self.leases.stop()
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

    def fence_second_primary(self, site: str, primary: str | None) -> None:
        """Fence ``site``, which answers as a primary beside ``primary``, through its agent."""
        now = time.monotonic()
        if now - self._fenced_at.get(site, -FENCE_AGAIN_AFTER) < FENCE_AGAIN_AFTER:
            return
        self._fenced_at[site] = now
        agent = self.deployment.agent(site)
        if agent is None:
            log_event(log, "watch.second_primary", site=site, primary=primary,
                      outcome="no agent to fence it: fence it by hand")
            return

        def fence() -> None:
            try:
                said = agent.fence(f"a second primary beside {primary}", timeout=10)
            except FailoverError as exc:
                log_event(log, "watch.second_primary", site=site, outcome="failed",
                          detail=one_line(exc))
                return
            log_event(log, "watch.second_primary", site=site, primary=primary,
                      outcome="fenced", terminated=said.get("terminated"))

        threading.Thread(target=fence, name=f"fence-{site}", daemon=True).start()
