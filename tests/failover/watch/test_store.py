"""The controller's store: notices kept once, moves and approvals, what a finished move answers."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from failover.watch.policy import Move
from failover.watch.signals import Notice
from failover.watch.store import NotApprovable, WatchStore

NOW = 1_800_000_000.0


def move(state: str = "proposed") -> Move:
    return Move("m1", "switchover", "aws", "hetzner", "aws", "notice", NOW, NOW,
                state)  # type: ignore[arg-type]


def test_a_notice_is_kept_once_and_the_file_is_private(tmp_path: Path) -> None:
    store = WatchStore(tmp_path / "watch.sqlite")
    first = Notice("aws", NOW + 3600, "webhook", "ends", reference="a")
    assert store.add_notice(first) is True
    assert store.add_notice(replace(first, text="sent again")) is False
    # The same notice by hand: another source, no reference, the same provider and deadline.
    assert store.add_notice(Notice("aws", NOW + 3600.0000004, "cli", "by hand")) is False
    assert [n.text for n in store.notices()] == ["ends"]
    # Another deadline, even in the same minute, is another notice.
    assert store.add_notice(Notice("aws", NOW + 3630, "cli", "by hand")) is True
    assert stat.S_IMODE((tmp_path / "watch.sqlite").stat().st_mode) == 0o600


def test_a_finished_move_answers_its_providers_notices_only(tmp_path: Path) -> None:
    store = WatchStore(tmp_path / "watch.sqlite")
    store.add_notice(Notice("aws", NOW + 3600, "webhook"))
    store.add_notice(Notice("hetzner", NOW + 3600, "webhook"))
    store.save_move(move("started"))
    assert len(store.notices()) == 2
    store.save_move(move("done"))
    assert [n.provider for n in store.notices()] == ["hetzner"]
    assert len(store.notices(pending=False)) == 2
    assert store.moves() == []  # done is not active
    assert [m.state for m in store.moves(active=False)] == ["done"]


def test_only_a_proposed_move_can_be_approved(tmp_path: Path) -> None:
    store = WatchStore(tmp_path / "watch.sqlite")
    store.save_move(move("proposed"))
    approved = store.approve("m1")
    assert approved.state == "approved" and approved.approved is not None
    assert store.move("m1") == approved
    with pytest.raises(NotApprovable, match="m1 is approved, not waiting"):
        store.approve("m1")
    store.save_move(replace(approved, state="superseded"))
    with pytest.raises(NotApprovable, match="superseded"):
        store.approve("m1")
    with pytest.raises(NotApprovable, match="no move 'zz'"):
        store.approve("zz")


def test_an_answered_notice_counts_again_only_when_reopened(tmp_path: Path) -> None:
    store = WatchStore(tmp_path / "watch.sqlite")
    notice = Notice("aws", NOW + 3600, "webhook", "ends", reference="t-1")
    assert store.add_notice(notice) is True
    store.save_move(move("done"))  # the move answered it
    assert store.notices() == []
    # Heard again while the primary is elsewhere: already answered, nothing to do.
    assert store.add_notice(notice) is False
    assert store.notices() == []
    # Heard again with the primary back at aws: it counts again.
    assert store.add_notice(replace(notice, text="still ending"), reopen=True) is True
    assert [n.text for n in store.notices()] == ["still ending"]
    # A pending notice is not new a second time, reopened or not.
    assert store.add_notice(notice, reopen=True) is False


def test_seen_signatures_outlive_the_store_object_until_stale(tmp_path: Path) -> None:
    path = tmp_path / "watch.sqlite"
    assert WatchStore(path).first_use("sig-1", NOW, now=NOW, max_age=300) is True
    # A new store object on the same file: a controller started again.
    again = WatchStore(path)
    assert again.first_use("sig-1", NOW, now=NOW + 10, max_age=300) is False
    assert again.first_use("sig-2", NOW + 10, now=NOW + 10, max_age=300) is True
    # Once stale, it is forgotten (the request is refused as stale anyway).
    assert again.first_use("sig-1", NOW, now=NOW + 301, max_age=300) is True


def test_a_drills_unanswered_notice_is_withdrawn_and_a_providers_is_kept(tmp_path: Path) -> None:
    store = WatchStore(tmp_path / "watch.sqlite")
    drill = Notice("aws", NOW + 20, "webhook", "drill: aws ends", reference="drill-1800000000")
    real = Notice("hetzner", NOW + 86400, "webhook", "contract ends", reference="t-9")
    store.add_notice(drill)
    store.add_notice(real)
    assert store.withdraw_drill_notices("drill termination-notice ended") == [drill.id]
    assert [n.reference for n in store.notices()] == ["t-9"]  # a provider's stays pending
    assert store.withdraw_drill_notices("again") == []
    assert len(store.notices(pending=False)) == 2  # withdrawn, not forgotten
