"""The restore operation without servers: its checks, its choice of backup, pgBackRest's argv."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from failover.agent.agent import Agent
from failover.agent.backup import PgBackRest
from failover.agent.config import AgentConfig
from failover.agent.pghost import PgHost
from failover.agent.restore import (
    RESTORING,
    RestoreRequest,
    pick_backup,
    restore_args,
    restore_params,
    restore_progress,
)
from failover.exceptions import ProviderError
from tests.failover.agent.served import Served, agent_config
from tests.failover.agent.test_backup import spec

NOW = datetime(2026, 11, 29, 16, 0, tzinfo=UTC)


def params(**body: Any) -> RestoreRequest:
    return restore_params({"repository": "spare", "as": "primary", **body}, now=lambda: NOW)


def test_a_primary_to_the_end_of_the_archive_or_to_a_time() -> None:
    latest = params(target_time=None)
    assert (latest.repository, latest.role, latest.target_time) == ("spare", "primary", None)
    assert latest.primary is None and latest.timeout is None
    at = params(target_time="2026-11-29T17:30:00+02:00", timeout=90)
    assert at.target_time == datetime(2026, 11, 29, 15, 30, tzinfo=UTC) and at.timeout == 90.0
    assert params(target_time="2026-11-29T15:30:00Z").target_time == at.target_time


def test_a_standby_names_its_primary() -> None:
    standby = params(**{"as": "standby", "primary": {"host": "10.0.0.5", "port": 5432}})
    assert standby.role == "standby" and standby.primary == ("10.0.0.5", 5432)


@pytest.mark.parametrize(("body", "error"), [
    ({"repository": None}, "repository must be the name"),
    ({"as": "replica"}, 'as must be "primary" or "standby"'),
    ({"as": None}, 'as must be "primary" or "standby"'),
    ({"target": "2026-11-29T15:00:00Z"}, "a restore takes no target "),
    ({"target_time": "yesterday"}, "is not ISO-8601"),
    ({"target_time": 1795970385}, "must be ISO-8601 text"),
    ({"target_time": "2026-11-29T15:00:00"}, "needs an offset"),
    ({"target_time": "2026-11-29T16:00:01+00:00"}, "is in the future"),
    ({"primary": {"host": "10.0.0.5", "port": 5432}}, "primary is for a standby"),
    ({"as": "standby"}, "a standby needs primary"),
    ({"as": "standby", "primary": {"host": "a b", "port": 5432}},
     "primary: host must be an IP address or a host name"),
    ({"as": "standby", "primary": {"host": "db", "port": 0}}, "primary: port must be a port"),
    ({"as": "standby", "primary": {"host": "db", "port": 5432},
      "target_time": "2026-11-29T15:00:00Z"}, "target_time is for a primary"),
    ({"timeout": 0}, "timeout must be a number of seconds"),
    ({"timeout": True}, "timeout must be a number of seconds"),
])
def test_a_bad_request_is_refused_with_what_is_wrong(body: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        params(**body)


def test_the_argv_for_each_kind_of_restore() -> None:
    assert restore_args(params(), "F1", delta=False) == ["--set=F1", "restore"]
    at = params(target_time="2026-11-29T17:30:00.25+02:00")
    assert restore_args(at, "F1_I2", delta=False) == [
        "--set=F1_I2", "--type=time", "--target=2026-11-29 15:30:00.250000+00",
        "--target-action=promote", "restore"]
    standby = params(**{"as": "standby", "primary": {"host": "db", "port": 5432}})
    assert restore_args(standby, "F1", delta=True) == [
        "--set=F1", "--delta", "--type=standby", "restore"]


def backup(label: str, stop: int, size: int = 100) -> dict[str, Any]:
    return {"label": label, "type": "full", "timestamp": {"start": stop - 5, "stop": stop},
            "info": {"size": size}}


def test_the_backup_is_the_newest_or_the_newest_that_ended_before_the_target() -> None:
    info = {"backup": [backup("F1", 1000), backup("F2", 2000), backup("F2_I1", 3000)]}
    assert pick_backup(info, None)["label"] == "F2_I1"  # type: ignore[index]
    at = datetime.fromtimestamp(2500, UTC)
    assert pick_backup(info, at)["label"] == "F2"  # type: ignore[index]
    # One that ended in the target's second may not be consistent by then: not that one.
    assert pick_backup(info, datetime.fromtimestamp(2000.5, UTC))["label"] == "F1"  # type: ignore[index]
    assert pick_backup(info, datetime.fromtimestamp(900, UTC)) is None
    assert pick_backup({}, None) is None


def test_progress_says_bytes_and_time_left() -> None:
    assert restore_progress("F1", "spare", 0, 30 * 1024 * 1024, 0.5) == (
        "restoring backup F1 from spare: 0.0 of 30.0 MiB")
    assert restore_progress("F1", "spare", 10 * 1024 * 1024, 30 * 1024 * 1024, 2.0) == (
        "restoring backup F1 from spare: 10.0 of 30.0 MiB, about 4 s left")


def test_a_restore_may_read_a_repository_at_the_hosts_own_provider(tmp_path: Path) -> None:
    pg = agent_config(tmp_path / "home", 7070).postgres
    tool = PgBackRest(spec(tmp_path), PgHost(pg), provider="spare")
    assert [r.name for r in tool.repos] == ["aws", "hetzner"]
    assert tool.repository("hetzner") is tool.repos[1]
    own = tool.repository("spare")
    assert (own.name, own.key, own.spec.provider) == ("spare", 0, "spare")
    with pytest.raises(ValueError, match="no repository 'gone': the configured ones are "
                                         "aws, hetzner, spare"):
        tool.repository("gone")
    tool.write_configs()
    assert "repo1-s3-endpoint=s3.spare.example" in tool.repo_conf(own).read_text()
    assert "s3.spare.example" not in tool.conf.read_text()  # it archives elsewhere


# -- the operation in an agent that is never begun (its server never starts) -----------


@pytest.fixture
def backed_up(tmp_path: Path) -> Iterator[Agent]:
    """An agent at spare with the three repositories, not begun."""
    base = agent_config(tmp_path / "agent", 7070)
    config = AgentConfig.model_validate({**base.model_dump(), "provider": "spare",
                                         "backup": spec(tmp_path).model_dump()})
    built = Agent(config)
    try:
        yield built
    finally:
        built.shutdown()


class Calls:
    """What a restore asked of pgBackRest, with canned answers (no pgBackRest runs)."""

    def __init__(self, agent: Agent) -> None:
        self.argv: list[tuple[str, ...]] = []
        tool = agent.restores.tool
        assert tool is not None
        self.tool = tool
        self.files = {"PG_VERSION": "15\n"}  # what the restore writes

    def info(self, repo: Any = None) -> dict[str, Any]:
        self.argv.append((str(self.tool.repo_conf(repo)), "info"))
        return {"backup": [backup("F1", 1000, size=4096)]}

    def run(self, conf: Path, *args: str, timeout: float, capture: bool = False) -> str:
        self.argv.append((str(conf), *args))
        data_dir = self.tool.host.spec.data_dir
        data_dir.mkdir(exist_ok=True)
        for name, text in self.files.items():
            (data_dir / name).write_text(text)
        return ""


def fake_pgbackrest(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls(agent)
    monkeypatch.setattr(calls.tool, "info", calls.info)
    monkeypatch.setattr(calls.tool, "run", calls.run)
    return calls


def data_dir_with(agent: Agent, name: str) -> Path:
    """The agent's data dir, holding one file."""
    data_dir = agent.config.postgres.data_dir
    data_dir.mkdir()
    (data_dir / name).write_text("15\n")
    return data_dir


def test_an_agent_without_a_backup_section_has_nothing_to_restore_from(
        served: Served) -> None:
    with pytest.raises(ProviderError, match="no backup section"):
        served.client().restore("spare", timeout=5)


def test_a_data_dir_with_data_is_never_overwritten_nor_its_server_stopped(
        backed_up: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_pgbackrest(backed_up, monkeypatch)
    data_dir_with(backed_up, "PG_VERSION")
    with pytest.raises(ProviderError, match="holds data: a restore never overwrites"):
        backed_up.restores.run({"repository": "spare", "as": "primary"}, print, "op-1")
    assert backed_up.supervisor.child("postgres").wanted  # not stopped
    assert calls.argv == []
    # Files a restore of another operation started a server on are live too, and so
    # are files a server runs on, whatever the note says.
    backed_up.journal.set(RESTORING, json.dumps({"op": "op-0", "stage": "started"}))
    with pytest.raises(ProviderError, match="holds data"):
        backed_up.restores.run({"repository": "spare", "as": "primary"}, print, "op-1")
    backed_up.journal.set(RESTORING, json.dumps({"op": "op-0", "stage": "restoring"}))
    monkeypatch.setattr(backed_up.supervisor.child("postgres"), "running", lambda: True)
    with pytest.raises(ProviderError, match="holds data"):
        backed_up.restores.run({"repository": "spare", "as": "primary"}, print, "op-1")
    assert calls.argv == []


def test_a_repository_not_configured_is_refused(backed_up: Agent) -> None:
    with pytest.raises(ValueError, match="no repository 'elsewhere'"):
        backed_up.restores.run({"repository": "elsewhere", "as": "primary"}, print, "op-1")


def restore_files(agent: Agent, op: str, **body: Any) -> dict[str, Any]:
    """The restore up to the server's start (the files, the journal's note)."""
    request = params(**body)
    tool = agent.restores.tool
    assert tool is not None
    return agent.restores._restore(op, request, tool.repository(request.repository),
                                   agent.restores._note(), print, lambda: 60.0)


def test_an_empty_host_is_restored_from_its_own_providers_repository(
        backed_up: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_pgbackrest(backed_up, monkeypatch)
    note = restore_files(backed_up, "op-1")
    conf = str(backed_up.config.backup.dir / "repo-spare.conf")  # type: ignore[union-attr]
    assert calls.argv == [(conf, "info"), (conf, "--set=F1", "restore")]
    assert not backed_up.supervisor.child("postgres").wanted  # nothing starts meanwhile
    assert note["stage"] == "started" and note["backup"] == "F1"
    assert note["backup_bytes"] == 4096 and note["op"] == "op-1"
    assert json.loads(backed_up.journal.setting(RESTORING) or "") == note


def test_a_restore_cut_short_is_finished_with_delta(
        backed_up: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_pgbackrest(backed_up, monkeypatch)
    data_dir = data_dir_with(backed_up, "backup.manifest")  # pgBackRest's mark
    backed_up.journal.set(RESTORING, json.dumps({"op": "op-1", "stage": "restoring"}))
    restore_files(backed_up, "op-1", target_time="2026-11-29T15:00:00Z")
    assert calls.argv[-1][1:] == ("--set=F1", "--delta", "--type=time",
                                  "--target=2026-11-29 15:00:00.000000+00",
                                  "--target-action=promote", "restore")
    assert (data_dir / "backup.manifest").exists()  # marked: --delta takes it from there


def test_files_cut_short_before_pgbackrest_marked_them_are_cleared_first(
        backed_up: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pgbackrest(backed_up, monkeypatch)
    data_dir = backed_up.config.postgres.data_dir
    (data_dir / "base" / "1").mkdir(parents=True)
    (data_dir / "base" / "1" / "1259").write_text("half")
    backed_up.journal.set(RESTORING, json.dumps({"op": "op-0", "stage": "restoring"}))
    restore_files(backed_up, "op-1")
    assert sorted(p.name for p in data_dir.iterdir()) == ["PG_VERSION"]


def test_a_restored_primary_drops_the_old_sites_synchronous_settings(
        backed_up: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_pgbackrest(backed_up, monkeypatch)
    calls.files["postgresql.auto.conf"] = (
        "restore_command = 'pgbackrest archive-get %f \"%p\"'\n"
        "synchronous_standby_names = 'FIRST 1 (\"hetzner\")'\n"
        "synchronous_commit = 'remote_apply'\n")
    restore_files(backed_up, "op-1")
    auto = backed_up.config.postgres.data_dir / "postgresql.auto.conf"
    assert auto.read_text() == "restore_command = 'pgbackrest archive-get %f \"%p\"'\n"


def test_a_target_time_before_every_backup_is_refused(
        backed_up: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pgbackrest(backed_up, monkeypatch)
    early = datetime.fromtimestamp(900, timezone(timedelta(hours=1))).isoformat()
    with pytest.raises(ProviderError, match="holds no backup that ended before"):
        restore_files(backed_up, "op-1", target_time=early)
