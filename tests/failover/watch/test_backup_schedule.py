"""The controller's backup schedule: which backup is due, read from what the repositories hold."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from failover.config import BackupsConfig
from failover.stores import RepositoryConfig
from failover.watch.backups import BackupKeeper, due
from failover.watch.metrics import WatchMetrics

HOUR = 3600.0
NOW = 1_000_000.0


def config(tmp_path: Path) -> BackupsConfig:
    repo = RepositoryConfig(provider="hetzner", endpoint="s3.example", bucket="b",
                            credentials_file=tmp_path / "creds")
    return BackupsConfig(repositories={"hetzner": repo}, incr_every=HOUR, diff_every=24 * HOUR,
                         full_every=7 * 24 * HOUR)


def repo(full_ago: float | None, last_ago: float | None = None, diff_ago: float | None = None,
         ok: bool = True) -> dict[str, Any]:
    def view(ago: float | None) -> dict[str, Any] | None:
        return None if ago is None else {"stopped": NOW - ago}

    return {"ok": ok, "last_full": view(full_ago),
            "last_backup": view(full_ago if last_ago is None else last_ago),
            "last_diff": view(diff_ago)}


@pytest.mark.parametrize(("repos", "expected"), [
    ([repo(10)], None),  # everything fresh
    ([repo(2 * HOUR)], "incr"),
    ([repo(2 * HOUR, last_ago=10)], None),  # an incremental since the full
    ([repo(2 * 24 * HOUR, last_ago=10)], "diff"),
    ([repo(2 * 24 * HOUR, last_ago=10, diff_ago=HOUR)], None),  # a recent differential
    ([repo(8 * 24 * HOUR, last_ago=10, diff_ago=10)], "full"),
    ([repo(10), repo(2 * HOUR)], "incr"),  # the most overdue repository decides
    ([repo(None)], None),  # no full yet: the agent takes it
    ([repo(8 * 24 * HOUR, ok=False)], None),  # unreadable: nothing asked of it
    ([], None),
])
def test_the_most_overdue_backup_is_due(tmp_path: Path, repos: list[dict[str, Any]],
                                        expected: str | None) -> None:
    assert due({"repositories": repos}, config(tmp_path), NOW) == expected


class FakeAgent:
    """What the keeper asks of the primary's agent: its status, its backups, a backup."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        return {"objects": {"targets": {"hetzner": {"lag_seconds": 1.5},
                                        "spare": {"lag_seconds": None}}}}

    def run(self, kind: str, body: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        self.asked.append((kind, body or {}))
        if kind == "backup/info":
            return {"repositories": [{"name": "hetzner", **repo(2 * HOUR),
                                      "last_wal_age_seconds": 3.0}]}
        return {"repositories": {"hetzner": "ok"}}


class FakeDeployment:
    def __init__(self, backups: BackupsConfig) -> None:
        self.config = type("Config", (), {"backups": backups})()
        self.agent_ = FakeAgent()

    def agent(self, site: str) -> FakeAgent:
        return self.agent_

    def ask_timeout(self, site: str, timeout: float) -> float:
        return timeout


def test_the_keeper_exports_the_lags_and_asks_for_the_backup_due(tmp_path: Path) -> None:
    deployment = FakeDeployment(config(tmp_path))
    metrics = WatchMetrics()
    keeper = BackupKeeper(deployment, metrics, lambda: "aws", clock=lambda: NOW)  # type: ignore[arg-type]
    keeper._look("aws")
    keeper._schedule("aws")
    sample = metrics.registry.get_sample_value
    assert sample("failover_object_replication_lag_seconds",
                  {"source": "aws", "target": "hetzner"}) == 1.5
    assert math.isnan(sample("failover_object_replication_lag_seconds",
                             {"source": "aws", "target": "spare"}) or 0.0)
    assert sample("failover_backup_wal_age_seconds", {"repository": "hetzner"}) == 3.0
    assert deployment.agent_.asked == [("backup/info", {}), ("backup", {"type": "incr"})]
