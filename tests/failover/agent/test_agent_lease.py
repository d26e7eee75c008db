"""The lease as a site's agent holds it: renewals, lapse, release, its files, a restart.

The agent is not begun (no child, no lease watcher); its database is down,
which the lease needs not: fencing at lapse is the lab's to show.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from failover.agent.agent import Agent
from failover.agent.config import AgentConfig
from failover.data import fencing
from failover.data.fencing import UNFENCED_SUFFIX
from failover.exceptions import ProviderError
from failover.waiting import wait_for
from tests.failover.agent.served import Served


def lease_file(agent: Agent) -> dict[str, Any]:
    return dict(json.loads(agent.lease.file.read_text()))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_renewal_that_ended_before_it_arrived_is_refused(served: Served) -> None:
    client = served.client()
    try:
        with pytest.raises(ProviderError, match="lease failed: the renewal ended") as refused:
            client.renew_lease(time.time() - 1)
    finally:
        client.close()
    assert refused.value.code == "FAILED"
    assert served.agent.lease.view().state == "off"  # a stale request never revives a lease
    assert lease_file(served.agent) == {"state": "off"}


def test_held_then_lapsed_then_released(served: Served) -> None:
    agent = served.agent
    client = served.client()
    try:
        said = client.renew_lease(time.time() + 1.0)
        assert said["state"] == "held" and 0.5 < said["expires_in"] <= 1.0
        assert said["regained"] is False
        written = lease_file(agent)
        assert written["state"] == "held"
        # CLOCK_MONOTONIC, the app's clock too: a frozen host finds it lapsed when it runs.
        assert 0.5 < written["monotonic_expires"] - time.monotonic() <= 1.0
        assert client.status()["lease"]["state"] == "held"

        wait_for(lambda: client.status()["lease"]["state"] == "lapsed", timeout=5,
                 what="the lease to lapse", retry_on=())
        assert agent.lease.lapsed()
        assert client.status()["lease"]["expires_in"] < 0
        # The file still says when it ended: the app refuses writes from its own clock.
        assert lease_file(agent) == written and written["monotonic_expires"] < time.monotonic()

        assert client.release_lease() == {"state": "off", "expires_in": None}
    finally:
        client.close()
    assert not agent.lease.lapsed()  # off is not lapsed: nothing to fence for
    assert lease_file(agent) == {"state": "off"}


def test_the_files_modes_lease_for_the_app_journal_for_the_agent(agent: Agent) -> None:
    agent.lease.renew(time.time() + 30)
    assert mode(agent.lease.file) == 0o644  # the app may run as another user
    assert mode(agent.journal.path) == 0o600
    assert mode(agent.config.state_dir) == 0o700
    assert not agent.lease.file.with_suffix(".tmp").exists()


def test_the_journal_is_made_private_even_when_it_was_not(config: AgentConfig) -> None:
    config.state_dir.mkdir(parents=True)
    journal = config.state_dir / "agent.sqlite"
    journal.touch(mode=0o644)
    agent = Agent(config)
    try:
        assert mode(journal) == 0o600
    finally:
        agent.shutdown()


def test_a_lease_held_before_a_restart_counts_as_lapsed_after_it(config: AgentConfig) -> None:
    """A restarted agent (a rebooted host) cannot tell how long it was gone: it holds no
    lease until the controller renews it."""
    first = Agent(config)
    try:
        first.lease.renew(time.time() + 60)
    finally:
        first.shutdown()

    second = Agent(config)  # the same state dir: what a restarted agent finds
    try:
        view = second.lease.view()
        assert view.state == "lapsed"
        written = lease_file(second)
        assert written["state"] == "held" and written["monotonic_expires"] <= time.monotonic()
        assert second.lease.renew(time.time() + 60).state == "held"
        second.lease.release()
    finally:
        second.shutdown()

    third = Agent(config)
    try:
        assert third.lease.view().state == "off"  # released stays released
        assert lease_file(third) == {"state": "off"}
    finally:
        third.shutdown()


def test_a_lease_that_lapsed_while_the_agent_was_down_is_lapsed_when_it_starts(
    config: AgentConfig,
) -> None:
    first = Agent(config)
    try:
        first.lease.renew(time.time() + 0.2)
    finally:
        first.shutdown()
    wait_for(first.lease.lapsed, timeout=5, what="the lease to end", retry_on=())
    second = Agent(config)
    try:
        assert second.lease.lapsed()  # so its server would start fenced
        assert lease_file(second)["monotonic_expires"] < time.monotonic()
    finally:
        second.shutdown()


def test_the_fence_sidecar_is_read_as_sql_wrote_it_but_never_through_a_link(
    agent: Agent,
) -> None:
    host = agent.host
    host.spec.data_dir.mkdir(parents=True, exist_ok=True)
    host.sidecar.write_text("host all all 0.0.0.0/0 scram-sha-256\n")
    host.sidecar.chmod(0o644)  # what the engine's fence (lo_export) leaves
    assert host.unfenced_hba() == host.sidecar.read_text()
    elsewhere = host.spec.data_dir / "secret"
    elsewhere.write_text("not an hba file\n")
    host.sidecar.unlink()
    host.sidecar.symlink_to(elsewhere)
    with pytest.raises(OSError):
        host.unfenced_hba()


def test_a_renewal_that_comes_while_the_lease_fence_runs_undoes_it(
    agent: Agent, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watcher's fence is slow (it ends sessions); a renewal in the meantime must not
    find "not fenced", answer so, and leave a primary the controller keeps fenced."""
    fencing_now, finish = threading.Event(), threading.Event()
    undone: list[str] = []

    def slow_fence() -> None:  # the real one needs a server; this one takes its time
        fencing_now.set()
        finish.wait(5)
        agent.journal.set("self_fenced", "yes")

    monkeypatch.setattr(agent, "_fence_for_lease", slow_fence)
    monkeypatch.setattr(agent.host, "connect", lambda timeout: nullcontext(None))
    monkeypatch.setattr(fencing, "unfence",
                        lambda conn, original, timeout: undone.append(original))
    agent.config.postgres.data_dir.mkdir()
    Path(str(agent.host.hba_path) + UNFENCED_SUFFIX).write_text("the original\n")

    agent.lease.renew(time.time() + 0.05)
    agent._thread(agent._watch_lease, "agent-lease")
    assert fencing_now.wait(5)
    answers: list[dict[str, Any]] = []
    renewal = threading.Thread(
        target=lambda: answers.append(agent.renew_lease({"expires_at": time.time() + 60,
                                                         "unfence": True})))
    renewal.start()
    finish.set()
    renewal.join(10)
    assert answers and answers[0]["regained"] is True and answers[0]["state"] == "held"
    assert undone == ["the original\n"]
    assert agent.journal.setting("self_fenced") is None
