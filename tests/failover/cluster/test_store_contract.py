"""The controller's store, one contract for both kinds: the SQLite file and etcd.

Every case runs against ``WatchStore`` (a file beside the journal) and
``EtcdStore`` (three real etcd members, marked lab). Two store objects on one
file or one prefix stand for two processes (a controller and ``failover
approve``, or two controllers); each has its own connection or client.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from failover.cluster.store import KEEP_DECISIONS, PRUNE_EVERY, EtcdStore
from failover.state import ControllerStore
from failover.waiting import wait_for
from failover.watch.policy import Decision, Move
from failover.watch.signals import Notice
from failover.watch.store import NotApprovable, WatchStore
from tests.failover.cluster.conftest import Members

NOW = 1_800_000_000.0
Opener = Callable[[], ControllerStore]


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.lab)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same store again, as another process would (a fresh store object)."""
    if request.param == "sqlite":
        return lambda: WatchStore(tmp_path / "watch.sqlite")
    members = request.getfixturevalue("members")
    name = f"store-{uuid.uuid4().hex[:8]}"  # a deployment of its own: no other test's keys
    return lambda: EtcdStore(members.cluster(name=name))


def move(state: str = "proposed", move_id: str = "m1", provider: str = "aws") -> Move:
    return Move(move_id, "switchover", provider, "hetzner", provider, "notice", NOW, NOW,
                state)  # type: ignore[arg-type]


def both_at_once(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released together; what each returned or raised."""
    start = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_notice_is_kept_once_by_its_id_or_its_provider_and_deadline(opener: Opener) -> None:
    store = opener()
    first = Notice("aws", NOW + 3600, "webhook", "ends", reference="a")
    assert store.add_notice(first) is True
    assert store.add_notice(replace(first, text="sent again")) is False
    # The same notice by hand: another source, no reference, the same provider and deadline.
    assert opener().add_notice(Notice("aws", NOW + 3600.0000004, "cli", "by hand")) is False
    assert [n.text for n in store.notices()] == ["ends"]
    # Another deadline, even in the same minute, is another notice; so is another provider's.
    assert store.add_notice(Notice("aws", NOW + 3630, "cli", "by hand")) is True
    assert store.add_notice(Notice("hetzner", NOW + 3600, "cli")) is True
    kept = opener().notices()
    assert sorted((n.provider, n.deadline) for n in kept) == [
        ("aws", NOW + 3600), ("aws", NOW + 3630), ("hetzner", NOW + 3600)]
    assert [n.deadline for n in kept] == sorted(n.deadline for n in kept)


def test_one_notice_heard_twice_at_once_is_new_once(opener: Opener) -> None:
    # A provider's webhook and the same notice by hand, at the same moment, via two processes.
    a, b = opener(), opener()
    results = both_at_once(lambda: a.add_notice(Notice("aws", NOW + 600, "webhook", "x",
                                                       reference="w-1")),
                           lambda: b.add_notice(Notice("aws", NOW + 600, "cli", "y")))
    assert sorted(results, key=str) == [False, True]
    assert len(opener().notices()) == 1


def test_a_finished_move_answers_its_providers_notices_only(opener: Opener) -> None:
    store = opener()
    store.add_notice(Notice("aws", NOW + 3600, "webhook"))
    store.add_notice(Notice("hetzner", NOW + 3600, "webhook"))
    store.save_move(move("started"))
    assert len(store.notices()) == 2
    store.save_move(move("done"))
    again = opener()
    assert [n.provider for n in again.notices()] == ["hetzner"]
    assert len(again.notices(pending=False)) == 2
    assert again.moves() == []  # done is not active
    assert [m.state for m in again.moves(active=False)] == ["done"]
    assert again.move("m1") == move("done") and again.move("nope") is None


def test_an_answered_notice_counts_again_only_when_reopened(opener: Opener) -> None:
    store = opener()
    notice = Notice("aws", NOW + 3600, "webhook", "ends", reference="t-1")
    assert store.add_notice(notice) is True
    store.save_move(move("done"))  # the move answered it
    assert store.notices() == []
    assert store.add_notice(notice) is False  # heard again while the primary is elsewhere
    assert store.add_notice(replace(notice, text="still ending"), reopen=True) is True
    assert [n.text for n in opener().notices()] == ["still ending"]
    assert store.add_notice(notice, reopen=True) is False  # pending: not new a second time


def test_only_a_proposed_move_can_be_approved(opener: Opener) -> None:
    store = opener()
    store.save_move(move("proposed"))
    approved = opener().approve("m1", by="alice")
    assert (approved.state, approved.approved_by) == ("approved", "alice")
    assert approved.approved is not None and store.move("m1") == approved
    with pytest.raises(NotApprovable, match="m1 is approved, not waiting"):
        store.approve("m1")
    store.save_move(replace(approved, state="superseded"))
    with pytest.raises(NotApprovable, match="superseded"):
        store.approve("m1")
    with pytest.raises(NotApprovable, match=r"no move 'zz' .* waiting for approval: none"):
        store.approve("zz")
    with pytest.raises(NotApprovable, match=re.escape("no move '../m1'")):
        store.approve("../m1")


def test_of_two_approvers_at_once_one_wins(opener: Opener) -> None:
    opener().save_move(move("proposed"))
    first, second = opener(), opener()
    results = both_at_once(lambda: first.approve("m1", by="alice"),
                           lambda: second.approve("m1", by="bob"))
    won = [r for r in results if isinstance(r, Move)]
    lost = [r for r in results if isinstance(r, NotApprovable)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "is approved, not waiting" in str(lost[0])
    assert opener().move("m1") == won[0]


def test_a_signature_is_used_once_until_it_is_stale(opener: Opener) -> None:
    assert opener().first_use("sig-1", NOW, now=NOW, max_age=2) is True
    again = opener()  # a controller started again
    assert again.first_use("sig-1", NOW, now=NOW + 1, max_age=2) is False
    assert again.first_use("sig-2", NOW + 1, now=NOW + 1, max_age=2) is True
    assert both_at_once(lambda: opener().first_use("sig-3", NOW, now=NOW, max_age=60),
                        lambda: opener().first_use("sig-3", NOW, now=NOW, max_age=60)
                        ).count(True) == 1
    # Once stale it is forgotten (its request is refused as stale anyway): the file drops
    # it when asked after max_age, etcd when its lease ends.
    wait_for(lambda: again.first_use("sig-1", NOW, now=NOW + 3, max_age=2), timeout=15,
             what="a stale signature to be forgotten", retry_on=(), interval=0.2)


def test_decisions_are_appended_and_read_newest_last(opener: Opener) -> None:
    store = opener()
    for i in range(5):
        store.add_decision(NOW + i, Decision("none" if i % 2 else "propose", f"said {i}"))
    assert [d["sentence"] for d in opener().decisions(limit=3)] == [
        "said 2", "said 3", "said 4"]
    since = opener().decisions(since=NOW + 3)
    assert [(d["at"], d["action"], d["sentence"]) for d in since] == [
        (NOW + 3, "none", "said 3"), (NOW + 4, "propose", "said 4")]
    assert since[-1] == {"at": NOW + 4, **Decision("propose", "said 4").to_dict()}


def test_drills_notices_no_move_answered_are_withdrawn(opener: Opener) -> None:
    store = opener()
    store.add_notice(Notice("aws", NOW + 60, "webhook", reference="drill-1"))
    store.add_notice(Notice("hetzner", NOW + 60, "webhook", reference="drill-2"))
    store.add_notice(Notice("aws", NOW + 120, "webhook", reference="real"))
    store.save_move(move("done", provider="hetzner"))  # answered drill-2
    withdrawn = opener().withdraw_drill_notices("drill ended")
    assert withdrawn == [Notice("aws", NOW + 60, "webhook", reference="drill-1").id]
    assert [n.reference for n in store.notices()] == ["real"]
    assert opener().withdraw_drill_notices("again") == []


@pytest.mark.lab
def test_etcd_keeps_only_the_newest_decisions(members: Members) -> None:
    store = EtcdStore(members.cluster(name=f"store-{uuid.uuid4().hex[:8]}"))
    many = KEEP_DECISIONS + PRUNE_EVERY + 1
    started = time.time()
    for i in range(many):
        store.add_decision(started + i / 1000, Decision("none", f"said {i}"))
    assert store.cluster.count("decisions/") == KEEP_DECISIONS
    assert store.decisions(limit=1)[0]["sentence"] == f"said {many - 1}"
    assert store.decisions(limit=many)[0]["sentence"] == f"said {many - KEEP_DECISIONS}"
