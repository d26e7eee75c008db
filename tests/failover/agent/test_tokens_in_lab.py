"""A deposed leader's request to a real agent is refused, and its primary keeps taking writes.

A lab of this module's own (127.87). The engine's own clients, from the lab's
configuration (``open_deployment``), carry the token a test sets, as an
elected controller's would: 7, then 6 (a deposed leader, late), then 8 (the
leader after it). The agent at aws supervises the lab's real primary.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from failover.agent.supervisor import read_children
from failover.engine.deployment import Deployment, open_deployment
from failover.exceptions import StaleToken
from failover.processes import is_alive, stop
from failover.waiting import wait_for
from infra.lab import agents
from infra.lab.postgres import APP_DATABASE, APP_USER
from tests.conftest import RunningLab, own_lab

pytestmark = pytest.mark.lab

SUBNET = "127.87"
SITE = "aws"  # the lab's primary
PROBE = "token_probe"

lab = own_lab(SUBNET, "failover-test-tokens-")


class Leader:
    """The token source an election would set; the test sets it."""

    def __init__(self, token: int | None) -> None:
        self.token = token

    def __call__(self) -> int | None:
        return self.token


@pytest.fixture(scope="module")
def tlab(lab: RunningLab) -> RunningLab:
    """The lab, with a table the app's user may write to."""
    with lab.endpoint(SITE, dbname=APP_DATABASE).connect(timeout=3) as conn:
        conn.execute(f"CREATE TABLE {PROBE} (row text PRIMARY KEY)")
        conn.execute(f"GRANT SELECT, INSERT ON {PROBE} TO {APP_USER}")
    return lab


@pytest.fixture
def elected(tlab: RunningLab) -> Iterator[tuple[Deployment, Leader]]:
    """The lab's deployment, its requests carrying the token of a ``Leader``."""
    deployment = open_deployment(None, tlab.lab.paths.root)
    leader = Leader(None)
    deployment.use_token(leader)
    try:
        yield deployment, leader
    finally:
        agent = deployment.agent(SITE)
        assert agent is not None
        agent.close()


def app_writes(c: RunningLab) -> bool:
    """Whether the app's user can write at the primary now (a fence refuses its sessions)."""
    try:
        with c.endpoint(SITE, user=APP_USER, dbname=APP_DATABASE).connect(timeout=2) as conn:
            conn.execute(f"INSERT INTO {PROBE} VALUES (%s)", (uuid.uuid4().hex,))
    except psycopg.OperationalError as exc:
        assert "pg_hba.conf" in str(exc) or "rejected" in str(exc), exc
        return False
    return True


def test_a_deposed_leaders_fence_is_refused_and_the_primary_keeps_taking_writes(
        tlab: RunningLab, elected: tuple[Deployment, Leader]) -> None:
    deployment, leader = elected
    agent = deployment.agent(SITE)
    assert agent is not None
    leader.token = 7
    assert agent.start_database(timeout=30)["pid"]  # a change (none: it runs), accepted
    assert agent.status()["newest_token"] == 7

    leader.token = 6  # the deposed leader's late fence
    with pytest.raises(StaleToken) as stale:
        agent.fence("a deposed leader's fence")
    said = str(stale.value)
    print(said)
    assert "\n" not in said and said.startswith(
        f"token 6 is older than 7, the newest the agent of {SITE} (")
    assert said.endswith("has seen: a deposed leader's request; nothing was done")
    assert agent.status()["fenced"] is False  # a read, answered
    assert app_writes(tlab)

    leader.token = 8  # the leader after it
    try:
        assert agent.fence("the new leader's fence")["fenced"] is True
        wait_for(lambda: not app_writes(tlab), timeout=10, what="the fence to be loaded",
                 retry_on=())
    finally:
        agent.unfence()
    wait_for(lambda: app_writes(tlab), timeout=10, what="writes after the unfence",
             retry_on=())
    assert agent.status()["newest_token"] == 8


def test_a_restarted_agent_still_refuses_the_deposed_leader(
        tlab: RunningLab, elected: tuple[Deployment, Leader]) -> None:
    c = tlab
    deployment, leader = elected
    agent = deployment.agent(SITE)
    assert agent is not None
    leader.token = 9
    assert agent.status()["newest_token"] == 9
    home = agents.agent_dir(c.lab.paths, SITE)
    left = read_children(home)  # its server runs on while it is down
    old_agent = c.lab.running_state().process(f"agent@{SITE}")
    assert old_agent is not None
    os.kill(old_agent.pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(old_agent), timeout=10, what=f"agent@{SITE} to die",
             retry_on=())
    try:
        record = agents.start(c.layout, c.lab.paths, SITE)
        try:
            c.lab.replace_process(record)
        except BaseException:
            stop(record)
            raise
        agents.wait_ready(c.layout, c.lab.paths, SITE)
        leader.token = 8  # the leader 9 deposed, after the restart
        with pytest.raises(StaleToken, match="token 8 is older than 9"):
            agent.fence("a deposed leader's fence, after a restart")
        assert agent.status()["fenced"] is False
        assert app_writes(c)
        c.lab.running_state()  # every part of the lab runs
    finally:
        now = read_children(home)
        for orphan in left:  # started by this lab, recorded nowhere any more: stop by PID
            if orphan not in now and is_alive(orphan):
                stop(orphan)
