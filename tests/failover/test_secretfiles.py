"""Secret files replaced whole: a reader sees the old file or the new, never half of either."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from failover.secretfiles import replace_file, write_private


def mode(path: Path) -> int:
    """A file's permission bits."""
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_replaced_file_is_a_new_private_file_and_the_old_one_is_left_whole(
        tmp_path: Path) -> None:
    path = tmp_path / "agent.secret"
    write_private(path, "old-secret\n")
    with path.open() as reader:  # someone reading it while it is replaced
        replace_file(path, "new-secret\n")
        # Truncated in place, the open file would now be empty or hold the new text.
        assert reader.read() == "old-secret\n"
    assert (path.read_text(), mode(path)) == ("new-secret\n", 0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["agent.secret"]  # nothing left beside


def test_a_file_is_made_with_the_mode_asked(tmp_path: Path) -> None:
    replace_file(tmp_path / "failover.yaml", "sites: {}\n", 0o644)
    assert mode(tmp_path / "failover.yaml") == 0o644


def test_a_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_private(elsewhere, "theirs\n")
    link = tmp_path / "tsig.key"
    link.symlink_to(elsewhere)
    replace_file(link, "ours\n")
    assert elsewhere.read_text() == "theirs\n"
    assert not link.is_symlink() and link.read_text() == "ours\n"


def test_a_failed_replace_leaves_the_old_file_and_no_stray(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "objects.credentials"
    write_private(path, "old\n")

    def refused(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(OSError, match="No space left"):
        replace_file(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["objects.credentials"]
