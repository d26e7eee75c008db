"""The rejoin's wait for a new standby: it nudges an idle primary until the standby is ready."""

from __future__ import annotations

import pytest

from failover.agent import rejoining
from failover.agent.rejoining import Rejoining
from failover.data.postgres import PgEndpoint
from failover.waiting import WaitTimeout

PRIMARY = PgEndpoint("127.0.0.9", 5432, "postgres", "postgres")


class Standby:
    """A server that becomes ready once the primary has written ``needed`` records."""

    def __init__(self, needed: int, nudges: list[PgEndpoint]) -> None:
        self.needed = needed
        self.nudges = nudges

    def wait_ready(self, timeout: float) -> None:
        if len(self.nudges) < self.needed:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for postgres")


def rejoining_with(host: Standby) -> Rejoining:
    agent = Rejoining()
    agent.host = host  # type: ignore[assignment]  # a stand-in: only wait_ready is used
    return agent


def test_an_idle_primary_is_nudged_until_the_standby_is_consistent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    nudges: list[PgEndpoint] = []
    monkeypatch.setattr(rejoining.rj, "nudge", nudges.append)
    monkeypatch.setattr(rejoining, "NUDGE_EVERY", 0.0)
    rejoining_with(Standby(3, nudges))._wait_consistent(PRIMARY, timeout=60)
    assert nudges == [PRIMARY] * 3


def test_a_ready_standby_is_not_nudged_and_one_never_ready_times_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    nudges: list[PgEndpoint] = []
    monkeypatch.setattr(rejoining.rj, "nudge", nudges.append)
    rejoining_with(Standby(0, nudges))._wait_consistent(PRIMARY, timeout=60)
    assert nudges == []
    with pytest.raises(WaitTimeout):
        rejoining_with(Standby(10**9, nudges))._wait_consistent(PRIMARY, timeout=0.0)
    assert nudges == []  # its time was up at the first look
