"""A site's provider API, called as the site's account: up, down, or refused (a signal).

Which question is asked, and how its answer is sorted, comes from the
provider-API registry (``failover.watch.providers``); the call blocks, so it
runs in a thread, never two at once for one probe.
"""

from __future__ import annotations

from collections.abc import Callable

from failover.threads import OneThread
from failover.watch.probes.contract import Finding, Looking, observe
from failover.watch.providers import ApiAnswer, ApiSettings, check_api
from failover.watch.signals import Observation, ProbeKind

ApiCheck = Callable[[ApiSettings, float], ApiAnswer]


class ApiProbe(Looking):
    """A provider's API, called as the site's account: up, down, or refused (a signal)."""

    kind: ProbeKind = "api"

    def __init__(self, target: str, config: ApiSettings, *, vantage: str,
                 interval: float = 5.0, timeout: float = 5.0,
                 check: ApiCheck = check_api) -> None:
        super().__init__(target, vantage, interval, timeout)
        self.config = config
        self._check = check
        self._thread = OneThread()

    async def look(self) -> Observation:
        """One blocking API call in a thread."""
        return await observe(self, self._ask)

    async def _ask(self) -> Finding:
        answer = await self._thread.call(self._check, self.config, self.timeout)
        return answer.status, answer.detail, {"code": answer.code}

    async def aclose(self) -> None:
        """Nothing is kept open between looks."""
