"""A run on local state although ``watch.cluster`` is set: after etcd lost its quorum.

What decides it (``FailoverConfig.without_cluster``, ``state.quorum_lost_with``)
and what the CLI says with and without ``--without-cluster``. The lab's
cluster at 127.99, where nothing listens: every request to it is refused.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from failover.cli import cli
from failover.config import FailoverConfig, load_config
from failover.engine.deployment import open_deployment
from failover.engine.journal import Journal
from failover.engine.rebuild import rebuild_deployment
from failover.state import (
    RunBusy,
    open_journal,
    open_store,
    quorum_lost_with,
    run_lock,
    run_lock_held,
    state_cluster,
)
from failover.watch.store import WatchStore
from infra.lab.config import lab_config
from infra.lab.paths import LabPaths
from tests.failover.handbuilt import LAYOUT, lab_files


def _with_cluster(tmp_path: Path) -> Path:
    """The hand-built lab's state dir, its config with the lab's etcd cluster (unreachable)."""
    root = lab_files(tmp_path / "lab")
    data = yaml.safe_load((root / "failover.yaml").read_text())
    cluster = lab_config(LAYOUT, LabPaths(root))["watch"]["cluster"]
    data["watch"]["cluster"] = {**cluster, "retry_timeout": 0.3}  # refused at once anyway
    (root / "failover.yaml").write_text(yaml.safe_dump(data))
    return root


def _config(tmp_path: Path) -> FailoverConfig:
    return load_config(_with_cluster(tmp_path) / "failover.yaml")


def test_without_the_cluster_the_state_is_in_the_files_though_one_is_configured(
        tmp_path: Path) -> None:
    config = _config(tmp_path)
    local = config.without_cluster()
    assert state_cluster(config) is config.watch.cluster is not None
    assert local.watch.cluster == config.watch.cluster and state_cluster(local) is None
    assert not config.local_state and local.local_state
    assert local.with_spare("spare").local_state  # kept by the copies a rebuild makes
    assert isinstance(open_store(local), WatchStore)
    journal = open_journal(local)
    assert isinstance(journal, Journal) and journal.where == str(config.journal)
    with run_lock(local, "test"):  # a file lock: etcd is never asked
        assert run_lock_held(local, "test")
        try:
            with run_lock(local, "another"):
                raise AssertionError("a second run took the lock")
        except RunBusy as busy:
            assert str(config.journal.with_suffix(".lock")) in str(busy)
    assert not run_lock_held(local, "test")


def test_the_file_cannot_ask_for_local_state(tmp_path: Path) -> None:
    root = _with_cluster(tmp_path)
    data = yaml.safe_load((root / "failover.yaml").read_text())
    (root / "failover.yaml").write_text(yaml.safe_dump({**data, "_local_state": True}))
    code, err = _run("status", "--state-dir", str(root))
    assert code == 2 and "_local_state" in err


def test_quorum_is_lost_with_two_of_three_sites_and_kept_with_one(tmp_path: Path) -> None:
    config = _config(tmp_path).with_spare("spare")
    lost = quorum_lost_with(config, ("aws", "hetzner"))
    assert lost is not None and lost.startswith("etcd lost 2 of its 3 members with aws and "
                                                "hetzner")
    assert LAYOUT.etcd_endpoint("aws") in lost and LAYOUT.etcd_endpoint("spare") not in lost
    assert quorum_lost_with(config, ("aws",)) is None
    assert quorum_lost_with(config.without_cluster(), ("aws", "hetzner")) is None


def _run(*args: str) -> tuple[int, str]:
    code, err, _out = _run_out(*args)
    return code, err


def _run_out(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stderr, result.stdout


def test_a_rebuild_whose_cluster_does_not_answer_names_the_flag_in_one_line(
        tmp_path: Path) -> None:
    root = _with_cluster(tmp_path)
    for command in (("rebuild", "--yes"), ("plan", "rebuild")):
        code, err = _run(*command, "--site", "spare", "--state-dir", str(root))
        assert code == 1, (command, err)
        assert err.count("\n") == 1 and "run again with --without-cluster" in err, err
        assert "etcd did not answer" in err  # and what the cluster said
    deployment = open_deployment(None, root)
    assert not deployment.config.journal.exists()  # nothing ran, nothing was journaled


def test_with_the_flag_the_rebuild_says_why_it_is_safe_once_etcd_does_not_answer(
        tmp_path: Path) -> None:
    root = _with_cluster(tmp_path)
    code, err, out = _run_out("plan", "rebuild", "--without-cluster", "--site", "spare",
                              "--state-dir", str(root))
    first = err.splitlines()[0]
    assert first.startswith("without the etcd cluster: the run lock, the run journal")
    assert "no controller can be elected or act" in first
    assert "Restore the etcd cluster before any controller runs again." in first
    # etcd was asked only whether it answers (a cluster that does refuses the flag); no
    # site answers at 127.99, so it plans the spare as the primary.
    assert code == 0 and out.startswith("plan: rebuild - -> spare"), (err, out)
    assert rebuild_deployment(open_deployment(None, root), "spare",
                              without_cluster=True).config.local_state
