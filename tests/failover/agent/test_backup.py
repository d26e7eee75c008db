"""pgBackRest on the host, without servers: which repositories, the configs, what info says."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from failover.agent.backup import (
    PgBackRest,
    archive_settings,
    repo_report,
    segment_end,
)
from failover.agent.config import AgentConfig, BackupSpec
from failover.agent.pghost import PgHost
from failover.stores import RepositoryConfig
from tests.failover.agent.served import agent_config


def repository(tmp: Path, provider: str) -> RepositoryConfig:
    creds = tmp / "aws.credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDLAB\n"
                     "aws_secret_access_key = not-a-real-secret\n")
    creds.chmod(0o600)
    return RepositoryConfig(provider=provider, endpoint=f"s3.{provider}.example", port=443,
                            bucket="backups", credentials_file=creds)


def spec(tmp: Path) -> BackupSpec:
    return BackupSpec(stanza="social", dir=tmp / "pgbackrest",
                      repositories={p: repository(tmp, p) for p in ("aws", "hetzner", "spare")})


def test_a_host_uses_only_the_repositories_at_other_providers(tmp_path: Path) -> None:
    backups = spec(tmp_path)
    assert list(backups.used("aws")) == ["hetzner", "spare"]
    assert list(backups.used("hetzner")) == ["aws", "spare"]
    assert list(backups.used("elsewhere")) == ["aws", "hetzner", "spare"]


def test_an_agent_whose_every_repository_is_at_its_own_provider_is_refused(
        tmp_path: Path) -> None:
    base = agent_config(tmp_path / "home", 7070)
    lonely = BackupSpec(dir=tmp_path / "b", repositories={"aws": repository(tmp_path, "aws")})
    with pytest.raises(ValueError, match="every store is at aws, this host's own provider"):
        AgentConfig.model_validate({**base.model_dump(), "provider": "aws",
                                    "backup": lonely.model_dump()})
    with pytest.raises(ValueError, match="backup needs provider"):
        AgentConfig.model_validate({**base.model_dump(), "backup": lonely.model_dump()})


def test_configs_hold_the_keys_privately_and_one_repository_each_for_backups(
        tmp_path: Path) -> None:
    config = agent_config(tmp_path / "home", 7070)
    pg = config.postgres.model_copy(update={"os_user": None})
    tool = PgBackRest(spec(tmp_path), PgHost(pg), provider="aws")
    tool.write_configs()
    main = tool.conf.read_text()
    assert "repo1-s3-endpoint=s3.hetzner.example" in main
    assert "repo2-s3-endpoint=s3.spare.example" in main
    assert "s3.aws.example" not in main
    assert "repo1-s3-key-secret=not-a-real-secret" in main
    assert f"pg1-path={pg.data_dir}" in main and "[social]" in main
    for repo in tool.repos:
        single = tool.repo_conf(repo).read_text()
        assert f"repo1-s3-endpoint=s3.{repo.name}.example" in single and "repo2" not in single
    for path in (tool.conf, *map(tool.repo_conf, tool.repos)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_server_archives_with_the_config_that_names_every_repository(
        tmp_path: Path) -> None:
    settings = archive_settings(spec(tmp_path))
    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == "5"
    assert settings["archive_command"] == (
        f"/usr/bin/pgbackrest --config={tmp_path}/pgbackrest/pgbackrest.conf "
        "--stanza=social archive-push %p")


def test_a_segment_ends_where_the_next_begins() -> None:
    assert segment_end("000000010000000000000001") == 2 * 16 * 1024 * 1024
    assert segment_end("0000000200000001000000FF") == (1 << 32) + 256 * 16 * 1024 * 1024


class FakeTool:
    """Only what repo_report asks of a PgBackRest: when a segment reached a repository."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def wal_time(self, repo: Any, archive_id: str, segment: str) -> float | None:
        return self.at


def test_a_report_gives_the_last_full_the_last_wal_its_age_and_what_is_unarchived(
        tmp_path: Path) -> None:
    tool = PgBackRest(spec(tmp_path), PgHost(agent_config(tmp_path / "h", 1).postgres), "aws")
    hetzner = tool.repos[0]
    info = {
        "backup": [
            {"type": "full", "label": "F1", "database": {"repo-key": 1},
             "timestamp": {"start": 900, "stop": 910},
             "info": {"size": 100, "repository": {"size": 30, "delta": 30}}},
            {"type": "incr", "label": "F1_I1", "database": {"repo-key": 1},
             "timestamp": {"start": 950, "stop": 955},
             "info": {"size": 100, "repository": {"size": 5, "delta": 5}}},
            {"type": "full", "label": "F9", "database": {"repo-key": 2},
             "timestamp": {"start": 1, "stop": 2}, "info": {}},
        ],
        "archive": [{"id": "15-1", "database": {"repo-key": 1},
                     "max": "000000010000000000000003", "min": "000000010000000000000001"}],
        "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}}],
    }
    lsn = segment_end("000000010000000000000003") + 1234
    report = repo_report(FakeTool(990.0), info, hetzner, lsn, 16 * 1024 * 1024,  # type: ignore[arg-type]
                         now=lambda: 1000.0)
    assert report["ok"] and report["backups"] == 2 and report["backup_bytes"] == 35
    assert report["last_full"]["label"] == "F1" and report["last_backup"]["label"] == "F1_I1"
    assert report["last_wal"] == "000000010000000000000003"
    assert report["last_wal_age_seconds"] == 10.0 and report["unarchived_bytes"] == 1234


def test_a_repository_with_nothing_yet_says_so(tmp_path: Path) -> None:
    tool = PgBackRest(spec(tmp_path), PgHost(agent_config(tmp_path / "h", 1).postgres), "aws")
    report = repo_report(FakeTool(None), {"repo": [{"key": 2, "status": {
        "code": 2, "message": "no valid backups"}}]}, tool.repos[1], None, 1)  # type: ignore[arg-type]
    assert not report["ok"] and report["status"] == "no valid backups"
    assert report["last_full"] is None and report["last_wal"] is None
