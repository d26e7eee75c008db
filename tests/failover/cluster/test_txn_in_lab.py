"""The wrapper's general transaction and range reads, against three real etcd members; and
a rebuild's --without-cluster refused while they answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from failover.cli import cli
from failover.cluster.journal import EtcdJournal
from failover.cluster.ops import Compare, Delete, Put
from failover.engine.deployment import open_deployment
from failover.exceptions import ConfigError
from infra.lab import etcd
from tests.failover.cluster.conftest import Members
from tests.failover.handbuilt import lab_files

pytestmark = pytest.mark.lab


def test_a_transaction_writes_all_or_nothing_on_its_conditions(members: Members) -> None:
    cluster = members.cluster()
    first = cluster.txn([Compare.absent("a"), Compare.absent("b")],
                        [Put("a", "1"), Put("b", "2")])
    a = cluster.get("a")
    assert first.succeeded and a is not None and a.mod_revision == first.revision
    # One condition fails: nothing of success is written, failure's ops are.
    late = cluster.txn([Compare.absent("a"), Compare.absent("c")], [Put("c", "x")],
                       [Put("lost", "a was there")])
    assert not late.succeeded and late.revision > first.revision
    assert cluster.get("c") is None and cluster.holds([Put("lost", "a was there")])
    # Each target: value, version, create and mod revision.
    assert cluster.txn([Compare("a", "VALUE", "1"), Compare("a", "VERSION", 1),
                        Compare("a", "CREATE", a.create_revision),
                        Compare.unchanged("a", a.mod_revision)], [Put("a", "2")]).succeeded
    assert not cluster.txn([Compare("a", "VALUE", "1")], [Put("a", "3")]).succeeded
    assert not cluster.txn([Compare.unchanged("a", a.mod_revision)], [Put("a", "3")]).succeeded
    assert cluster.holds([Put("a", "2")]) and not cluster.holds([Put("a", "3")])


def test_a_prefix_condition_sees_any_key_written_after_a_read(members: Members) -> None:
    cluster = members.cluster()
    assert cluster.txn([Compare.nothing_newer("n/", 0)], [Put("n/1", "x")]).succeeded
    seen = max(e.mod_revision for e in cluster.range("n/"))
    cluster.put("n/2", "another writer's")
    assert not cluster.txn([Compare.nothing_newer("n/", seen)], [Put("n/3", "x")]).succeeded
    cluster.put("other", "outside the prefix")
    seen = max(e.mod_revision for e in cluster.range("n/"))
    assert cluster.txn([Compare.nothing_newer("n/", seen)], [Put("n/3", "x")]).succeeded


def test_ranges_from_a_key_newest_first_by_creation_and_deletes_of_a_span(
        members: Members) -> None:
    cluster = members.cluster()
    for key in ("d/3", "d/1", "d/2", "d/4"):  # created in this order
        cluster.put(key, key.upper())
    assert [e.key for e in cluster.range("d/", start="d/2")] == ["d/2", "d/3", "d/4"]
    assert [e.key for e in cluster.range("d/", by="create")] == ["d/3", "d/1", "d/2", "d/4"]
    newest = cluster.range("d/", newest_first=True, limit=2, keys_only=True)
    assert [(e.key, e.value) for e in newest] == [("d/4", ""), ("d/3", "")]
    assert cluster.count("d/") == 4 and cluster.count("none/") == 0
    cluster.txn([], [Delete("d/", end="d/3")])
    assert [e.key for e in cluster.range("d/")] == ["d/3", "d/4"]
    cluster.txn([], [Delete("d/", prefix=True), Delete("x")])
    assert cluster.range("d/") == []
    with pytest.raises(ValueError, match="must start with its prefix"):
        cluster.range("d/", start="e/1")


def test_the_etcd_journal_refuses_an_event_of_a_run_it_does_not_hold(
        members: Members) -> None:
    journal = EtcdJournal(members.cluster())
    with pytest.raises(ConfigError, match="no run '20990101-000000-abcdef'"):
        journal.step_started("20990101-000000-abcdef", 0, "fence")
    with pytest.raises(ConfigError, match="no run"):
        journal.ended("../runs/x", "ok")
    assert journal.cluster.range() == []  # nothing written


def test_a_rebuild_without_the_cluster_is_refused_while_the_cluster_answers(
        members: Members, tmp_path: Path) -> None:
    # The flag is for etcd without quorum: with a leader possible, the rebuild and the
    # controllers would keep two journals and two run locks.
    root = lab_files(tmp_path / "lab")
    data = yaml.safe_load((root / "failover.yaml").read_text())
    data["watch"]["cluster"] = {"endpoints": etcd.endpoints(members.layout), "ttl": 10,
                                "loop_wait": 2.0, "retry_timeout": 3.0}
    (root / "failover.yaml").write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["plan", "rebuild", "--without-cluster", "--site",
                                      "spare", "--state-dir", str(root)])
    assert result.exit_code == 1, result.output
    assert "the etcd cluster (watch.cluster) answers" in result.stderr
    assert "run again without --without-cluster" in result.stderr
    assert not open_deployment(None, root).config.journal.exists()
