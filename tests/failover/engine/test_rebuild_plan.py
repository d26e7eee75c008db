"""The rebuild's plan over hand-written topologies: what the spare becomes, and what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from failover.config import parse_config
from failover.engine.rebuild import plan_rebuild, rebuild_deployment, repositories_in_order
from failover.exceptions import ConfigError, UnsafePlan
from tests.failover.engine.conftest import (
    FakeDeployment,
    actions,
    config_data,
    gone,
    healthy,
    standby,
    topology,
)

SPARE = "10.0.30.1"


def spare_data(tmp_path: Path) -> dict[str, Any]:
    data = config_data()
    data["spares"] = {"spare": {
        "provider": "spare", "address": SPARE, "app_url": f"http://{SPARE}:8080",
        "database": {"host": SPARE}, "objects": {"bucket": "media-spare"},
        "compute": {"kind": "agent", "url": f"http://{SPARE}:7070",
                    "secret_file": "agent-spare.secret"},
        "provision": {"kind": "hcloud", "token_file": "hcloud.token"},
        "agent_config_file": "spare-agent.yaml"}}
    repo = {"endpoint": "s3.example", "bucket": "backups", "credentials_file": "aws.creds"}
    data["backups"] = {"repositories": {name: {**repo, "provider": name}
                                        for name in ("aws", "hetzner", "spare")}}
    return data


@pytest.fixture
def spared(tmp_path: Path) -> FakeDeployment:
    deployment = FakeDeployment(tmp_path, spare_data(tmp_path))
    made = rebuild_deployment(deployment, "spare")
    fake = FakeDeployment(tmp_path, spare_data(tmp_path))
    fake.config = made.config
    return fake


def test_with_nothing_left_the_spare_becomes_the_primary_restored_from_its_own_provider_first(
        spared: FakeDeployment) -> None:
    plan = plan_rebuild(spared, "spare", topology(gone("aws"), gone("hetzner"), gone("spare")))
    assert (plan.kind, plan.from_site, plan.to_site) == ("rebuild", "-", "spare")
    assert actions(plan) == ["check_rebuild", "provision", "restore_database", "sync_objects",
                             "sync_objects", "start_app", "wait_writable", "switch_dns",
                             "check_result"]
    restore = next(s for s in plan.steps if s.action == "restore_database")
    assert restore.params["repositories"] == ["spare", "aws", "hetzner"]
    assert restore.params["role"] == "primary" and restore.params["target_time"] is None
    assert [s.params["from"] for s in plan.steps if s.action == "sync_objects"] == [
        "aws", "hetzner"]
    assert any("must not serve" in note for note in plan.notes)


def test_with_a_live_primary_the_spare_becomes_its_standby_and_dns_is_left_alone(
        spared: FakeDeployment) -> None:
    plan = plan_rebuild(spared, "spare", topology(*healthy("aws").sites.values(),
                                                  gone("spare")))
    assert "switch_dns" not in actions(plan) and "start_app" not in actions(plan)
    restore = next(s for s in plan.steps if s.action == "restore_database")
    assert (restore.params["role"], restore.params["primary"]) == ("standby", "aws")
    assert plan.steps[-1].params["standbys"] == ["spare"]


@pytest.mark.parametrize(("role", "to_time", "said"), [
    ("primary", None, "aws answers as the primary"),
    ("standby", "2026-11-29T16:30:00+00:00", "--to-time is for a primary"),
])
def test_what_cannot_be_is_refused(spared: FakeDeployment, role: str, to_time: str | None,
                                   said: str) -> None:
    with pytest.raises(UnsafePlan, match=said):
        plan_rebuild(spared, "spare", healthy("aws"), role=role, to_time=to_time)


def test_a_standby_needs_a_primary(spared: FakeDeployment) -> None:
    with pytest.raises(UnsafePlan, match="needs the one primary"):
        plan_rebuild(spared, "spare", topology(gone("aws"), standby("hetzner", None)),
                     role="standby")


def test_only_a_spare_is_rebuilt(spared: FakeDeployment, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a site, not a spare"):
        plan_rebuild(spared, "aws", healthy("aws"))
    plain = parse_config(spare_data(tmp_path), "failover.yaml", tmp_path)
    with pytest.raises(ConfigError, match="no site or spare 'ovh'"):
        plain.with_spare("ovh")


def test_repositories_at_the_spares_provider_come_first(tmp_path: Path) -> None:
    config = parse_config(spare_data(tmp_path), "failover.yaml", tmp_path).with_spare("spare")
    assert repositories_in_order(config, "spare") == ["spare", "aws", "hetzner"]
    assert repositories_in_order(config, "aws") == ["aws", "hetzner", "spare"]


def test_a_config_whose_backups_all_live_at_one_sites_provider_is_refused(
        tmp_path: Path) -> None:
    data = spare_data(tmp_path)
    data["backups"]["repositories"] = {"aws": data["backups"]["repositories"]["aws"]}
    with pytest.raises(ConfigError, match="none is at a provider other than aws"):
        parse_config(data, "failover.yaml", tmp_path)
