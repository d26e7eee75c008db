"""Where state is kept, chosen by the configuration; the etcd store's rules, without etcd.

Opening a store or a journal in etcd connects to nothing: these run in the
unit layer. The contract tests run both kinds against real members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from failover.cluster.journal import EtcdJournal
from failover.cluster.store import EtcdStore, decision_key, same_notice
from failover.config import FailoverConfig, load_config
from failover.engine.journal import Journal
from failover.state import existing_journal, existing_store, open_journal, open_store
from failover.watch.signals import Notice
from failover.watch.store import WatchStore, store_path
from tests.failover.handbuilt import lab_files

NOW = 1_800_000_000.0
ENDPOINTS = ["http://127.99.10.1:2379", "http://127.99.20.1:2379"]  # nothing listens there


def _config(tmp_path: Path, **cluster: Any) -> FailoverConfig:
    root = lab_files(tmp_path / "lab")
    if cluster:
        data = yaml.safe_load((root / "failover.yaml").read_text())
        data["watch"]["cluster"] = cluster
        (root / "failover.yaml").write_text(yaml.safe_dump(data))
    return load_config(root / "failover.yaml")


def test_without_a_cluster_the_state_is_in_files_beside_the_journal(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert existing_store(config) is None and existing_journal(config) is None
    assert not store_path(config.journal).exists()  # asking made no file
    store, journal = open_store(config), open_journal(config)
    assert isinstance(store, WatchStore) and store.path == store_path(config.journal)
    assert isinstance(journal, Journal) and journal.where == str(config.journal)
    store.add_notice(Notice("aws", NOW, "cli"))
    assert isinstance(existing_store(config), WatchStore)


def test_with_a_cluster_every_part_is_in_etcd_under_the_deployments_name(
        tmp_path: Path) -> None:
    config = _config(tmp_path, endpoints=ENDPOINTS, name="shop")
    store, journal = open_store(config), open_journal(config, token=lambda: 7)
    assert isinstance(store, EtcdStore) and isinstance(journal, EtcdJournal)
    assert store.cluster.prefix == "/failover/shop/" == journal.cluster.prefix
    assert store.cluster.endpoints == ENDPOINTS
    assert journal.where == "in etcd (http://127.99.10.1:2379, ...) under /failover/shop/runs/"
    # Reading asks etcd, so there is no file to look for first.
    assert isinstance(existing_store(config), EtcdStore)
    assert isinstance(existing_journal(config), EtcdJournal)
    assert not store_path(config.journal).exists() and not config.journal.exists()


def test_one_notice_is_the_same_id_or_the_same_provider_and_deadline() -> None:
    kept = Notice("aws", NOW, "webhook", reference="w-1")
    assert same_notice(kept, Notice("hetzner", NOW + 99, "webhook", reference="w-1"))
    assert same_notice(kept, Notice("aws", NOW + 0.0004, "cli"))
    assert not same_notice(kept, Notice("aws", NOW + 1, "cli"))
    assert not same_notice(kept, Notice("hetzner", NOW, "cli"))


def test_decision_keys_sort_as_their_times_and_never_collide() -> None:
    times = [0.0, 1.5, NOW, NOW + 0.000001, NOW + 1, 4_000_000_000.0]
    keys = [decision_key(t) for t in times]
    assert keys == sorted(keys) and len({decision_key(NOW) for _ in range(50)}) == 50
    assert all(k.startswith("decisions/") for k in keys)
