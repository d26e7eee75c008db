"""Restore through an agent: the spare site, which had nothing, gets its database as a primary
from the repository at its own provider, to the end of the archive and to a time.

A lab of this module's own (127.95). The lab runs no agent at the spare site: the module
starts one (without the app and the copies of objects, which are not what is tested),
and stops it by PID at the end, and its server with it.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from failover.agent.client import AgentClient
from failover.agent.config import dump_agent_config, load_agent_config
from failover.agent.supervisor import read_children
from failover.exceptions import ProviderError
from failover.processes import is_alive, stop
from failover.waiting import wait_for
from infra.lab import agents
from infra.lab.postgres import APP_DATABASE, LabPostgres
from infra.lab.system import RunAs, postgres_bindir
from tests.conftest import RunningLab, own_lab

pytestmark = pytest.mark.lab

SUBNET = "127.95"
TABLE = "restore_probe"

lab = own_lab(SUBNET, "failover-test-restore-")


@pytest.fixture(scope="module")
def spare(lab: RunningLab) -> Iterator[AgentClient]:
    """An agent at the spare site, its data dir empty, and a table at the primary (aws)."""
    rows(lab, "aws", f"CREATE TABLE {TABLE} (token text PRIMARY KEY)")
    layout, paths = lab.layout, lab.lab.paths
    pg = LabPostgres(layout, paths, lab.secrets, postgres_bindir(), RunAs.service("postgres"))
    path = agents.write_agent(layout, paths, pg, "spare")
    config = load_agent_config(path).model_copy(update={"app": None, "objects": None})
    path.write_text(dump_agent_config(config))
    record = agents.start(layout, paths, "spare")
    client = agents.client(layout, paths, "spare")
    try:
        agents.wait_ready(layout, paths, "spare", database=False)
        yield client
    finally:
        # Killed, not shut down: its archiver would retry what the repositories refuse
        # (each restore here starts timeline 2 anew, and its history file is taken).
        with contextlib.suppress(ProviderError):
            client.stop_database(mode="kill")
        client.close()
        children = read_children(agents.agent_dir(paths, "spare"))
        stop(record)
        for child in children:
            if is_alive(child):
                stop(child)


def rows(c: RunningLab, site: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with c.endpoint(site, dbname=APP_DATABASE).connect(timeout=3) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def write(c: RunningLab) -> str:
    token = uuid.uuid4().hex[:12]
    rows(c, "aws", f"INSERT INTO {TABLE} VALUES (%s)", token)
    return token


def archived(c: RunningLab) -> dict[str, Any]:
    """Wait until the spare repository holds a full backup and every write made so far."""
    (segment,) = rows(c, "aws", "SELECT pg_walfile_name(pg_current_wal_lsn())")[0]
    rows(c, "aws", "SELECT pg_switch_wal()")  # the writes' segment goes now, not in 5 s
    aws = agents.client(c.layout, c.lab.paths, "aws")

    def spare_repo() -> dict[str, Any] | None:
        report = aws.run("backup/info", {}, timeout=30)
        repo = next(r for r in report["repositories"] if r["name"] == "spare")
        done = repo["last_full"] and (repo["last_wal"] or "") >= segment
        return dict(repo) if done else None

    try:
        # A bound, not a pace: under load the first full backup queues behind another.
        return wait_for(spare_repo, timeout=120, interval=0.5, retry_on=(),
                        what=f"{segment} and a full backup in the spare repository")
    finally:
        aws.close()


def restored(c: RunningLab, query: str, *params: object) -> list[tuple[Any, ...]]:
    with c.endpoint("spare", dbname=APP_DATABASE).connect(timeout=3) as conn:
        return conn.execute(query, params).fetchall()


def fresh(c: RunningLab, spare: AgentClient) -> None:
    """Give the spare site an empty host again (a restore never overwrites data)."""
    spare.stop_database(mode="kill")  # its files go: no need to shut it down cleanly
    shutil.rmtree(c.lab.paths.pgdata("spare"), ignore_errors=True)


def test_a_site_with_nothing_gets_the_primarys_writes_from_the_spare_repository(
        lab: RunningLab, spare: AgentClient) -> None:
    tokens = {write(lab) for _ in range(3)}
    repo = archived(lab)
    result = spare.restore("spare", timeout=60)
    print("restore:", result)  # the measured seconds, for the report (pytest -s)
    assert result["repository"] == "spare" and result["target_time"] is None
    assert result["backup"] == repo["last_full"]["label"] and result["backup_bytes"] > 0
    assert result["timeline"] >= 2  # promoted: a timeline of its own
    assert set(result["seconds"]) == {"restore", "recovery"}
    assert restored(lab, "SELECT pg_is_in_recovery()") == [(False,)]
    found = restored(lab, f"SELECT token FROM {TABLE} WHERE token = ANY(%s)", list(tokens))
    assert {t for (t,) in found} == tokens
    status = spare.status()
    assert status["role"] == "primary" and status["fenced"] is False


def test_a_restore_to_a_time_leaves_out_what_was_written_after_it(
        lab: RunningLab, spare: AgentClient) -> None:
    fresh(lab, spare)
    before = write(lab)
    (target,) = rows(lab, "aws", "SELECT clock_timestamp()")[0]
    after = write(lab)
    archived(lab)  # WAL past the target: recovery stops at the first commit after it
    result = spare.restore("spare", target_time=target.isoformat(), timeout=60)
    print("restore to a time:", result)
    assert datetime.fromisoformat(result["target_time"]) == target
    assert restored(lab, "SELECT pg_is_in_recovery()") == [(False,)]
    assert restored(lab, f"SELECT token FROM {TABLE} WHERE token IN (%s, %s)",
                    before, after) == [(before,)]
