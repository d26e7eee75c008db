"""The controller's side of the lease (failover/lease.py): the book of grants and the keeper.

The keeper's agent calls are plain callables here; the lab shows them
against real agents.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from failover.exceptions import ProviderError
from failover.lease import CLOCK_MARGIN, SUSPECT_AFTER, LeaseBook, LeaseKeeper, LeaseWithheld
from failover.waiting import wait_for


class FakeAgents:
    """The agents a keeper talks to: they answer, or not, as the test says."""

    def __init__(self, book: LeaseBook) -> None:
        self.book = book
        self.reachable = True
        self.renewals: list[tuple[str, float, float | None]] = []  # with the book's end then
        self.asked: list[str] = []

    def renew(self, site: str, expires_at: float, timeout: float) -> None:
        self.renewals.append((site, expires_at, self.book.ends_at(site)))
        if not self.reachable:
            raise ProviderError("no answer", provider="agent", code="UNREACHABLE")

    def answers(self, site: str, timeout: float) -> None:
        self.asked.append(site)
        if not self.reachable:
            raise ProviderError("no answer", provider="agent", code="UNREACHABLE")


@pytest.fixture
def book(tmp_path: Path) -> LeaseBook:
    return LeaseBook(tmp_path / "leases.sqlite")


def keeper(book: LeaseBook, agents: FakeAgents, holder: str | None = "aws",
           every: float = 1.0) -> LeaseKeeper:
    return LeaseKeeper(book, agents.renew, agents.answers, lambda: holder, seconds=4.0,
                       every=every)


def test_the_book_holds_the_latest_end_any_grant_could_reach(book: LeaseBook) -> None:
    assert book.ends_at("aws") is None  # no file yet
    book.granting("aws", 2000.0)
    book.granting("aws", 1000.0)  # a grant sent earlier that may still arrive: no shorter
    book.granting("hetzner", 1500.0)
    assert book.ends_at("aws") == 2000.0
    assert book.lapsed_by("aws") == 2000.0 + CLOCK_MARGIN
    assert book.ends_at("hetzner") == 1500.0
    assert book.ends_at("gcp") is None and book.lapsed_by("gcp") is None
    book.granting("aws", 3000.0)
    assert LeaseBook(book.path).ends_at("aws") == 3000.0  # on disk: a restart knows it


def test_a_grant_is_written_down_before_the_renewal_is_sent(book: LeaseBook) -> None:
    agents = FakeAgents(book)
    keep = keeper(book, agents)
    assert keep.renew_once("aws")
    (site, expires_at, in_book), = agents.renewals
    assert site == "aws" and in_book == expires_at  # the book knew before the agent did
    assert keep.held == "aws"  # what a stopping controller turns off

    agents.reachable = False
    assert not keep.renew_once("aws")  # no answer: it may still have arrived ...
    assert book.ends_at("aws") == agents.renewals[-1][1]  # ... so the book counts it


def test_an_agent_that_stops_answering_is_only_asked_until_it_answers(
    book: LeaseBook,
) -> None:
    agents = FakeAgents(book)
    keep = keeper(book, agents)
    agents.reachable = False
    for _ in range(SUSPECT_AFTER):
        assert not keep.renew_once("aws")
    assert len(agents.renewals) == SUSPECT_AFTER and agents.asked == []
    ends = book.ends_at("aws")

    for _ in range(3):  # suspect now: asked, never renewed, the book not extended
        assert not keep.renew_once("aws")
    assert len(agents.renewals) == SUSPECT_AFTER and agents.asked == ["aws"] * 3
    assert book.ends_at("aws") == ends

    agents.reachable = True
    assert keep.renew_once("aws")  # it answers: asked once more, then renewed
    assert agents.asked == ["aws"] * 4 and len(agents.renewals) == SUSPECT_AFTER + 1
    assert book.ends_at("aws") == agents.renewals[-1][1] > (ends or 0)
    assert keep.renew_once("aws")
    assert len(agents.asked) == 4  # trusted again: renewals go straight out


def test_the_keeper_renews_the_holder_from_its_thread(book: LeaseBook) -> None:
    agents = FakeAgents(book)
    keep = keeper(book, agents, every=0.05)
    keep.start()
    try:
        wait_for(lambda: len(agents.renewals) >= 3, timeout=5, what="three renewals",
                 retry_on=())
    finally:
        keep.stop()
    assert {site for site, _, _ in agents.renewals} == {"aws"}
    count = len(agents.renewals)
    assert not keep._thread or not keep._thread.is_alive()
    assert len(agents.renewals) == count  # stopped: no more


def test_no_holder_renews_nothing(book: LeaseBook) -> None:
    agents = FakeAgents(book)
    looks = threading.Semaphore(0)

    def nobody() -> None:
        looks.release()
        return None

    keep = LeaseKeeper(book, agents.renew, agents.answers, nobody, seconds=4.0, every=0.02)
    keep.start()
    try:
        for _ in range(3):  # the keeper looked three times, and found no primary to keep
            assert looks.acquire(timeout=5)
    finally:
        keep.stop()
    assert agents.renewals == [] and agents.asked == []
    assert book.ends_at("aws") is None


def test_a_withheld_site_gets_no_grant_until_it_is_allowed_again(book: LeaseBook) -> None:
    """A promote withholds the old primary's lease: a renewal begun before it looked
    must not extend the time it waits for."""
    book.granting("aws", 1000.0)
    book.withhold("aws")
    with pytest.raises(LeaseWithheld):
        book.granting("aws", 2000.0)
    assert book.ends_at("aws") == 1000.0
    book.granting("hetzner", 3000.0)  # others are not touched
    book.allow("aws")  # promoted again, later: it is the primary
    book.granting("aws", 2000.0)
    assert book.ends_at("aws") == 2000.0
