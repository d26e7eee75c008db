"""The lab's fault injector on stand-in processes: no lab servers, real signals.

A site here is a stand-in agent (a small Python process) that starts its
site's parts as children, as ``failover agent`` does: one stands for the
PostgreSQL server and forks a child of its own (as a postmaster forks
backends), one for the app. The agent is recorded in a ``lab.json`` of the
test's own and records its children in its ``children.json``, so the injector
finds and signals them exactly as it does a lab's. A crash goes through a real
agent, so that one is tested in a lab (marked ``lab``).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from failover.exceptions import ProviderError
from failover.processes import (
    ProcessRecord,
    descendants,
    is_alive,
    signal_tree,
    spawn,
    state_of,
    stop,
)
from failover.waiting import wait_for
from infra.lab import agents
from infra.lab.exceptions import LabNotRunning
from infra.lab.lab import LabState
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.providers.lab_faults import LabFaults
from tests.conftest import RunningLab

FORKS_A_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "time.sleep(120)\n"
)
SLEEPS = "import time; time.sleep(120)"
# A site's agent, standing in: it starts the site's parts and records them, as the
# real one does, in <its dir>/children.json (written whole, then renamed).
AGENT = (
    "import json, os, sys, time\n"
    "from pathlib import Path\n"
    "from failover.processes import spawn\n"
    "home, site = Path(sys.argv[1]), sys.argv[2]\n"
    f"parts = [spawn(f'postgres@{{site}}', [sys.executable, '-c', {FORKS_A_CHILD!r}],\n"
    "              log=home / 'postgres.log'),\n"
    f"         spawn(f'app@{{site}}', [sys.executable, '-c', {SLEEPS!r}], log=home / 'app.log')]\n"
    "data = {'agent_pid': os.getpid(), 'children': [p.to_dict() for p in parts]}\n"
    "(home / 'children.tmp').write_text(json.dumps(data))\n"
    "(home / 'children.tmp').rename(home / 'children.json')\n"
    "time.sleep(120)\n"
)
SITES = ("aws", "hetzner")


@dataclass(frozen=True)
class StandIn:
    """A recorded lab of stand-in agents and the injector over it."""

    faults: LabFaults
    records: dict[str, ProcessRecord]  # every agent and every child, by name

    def tree(self, name: str) -> list[int]:
        record = self.records[name]
        return [record.pid, *descendants(record.pid)]


def start_agent(paths: LabPaths, site: str) -> tuple[ProcessRecord, list[ProcessRecord]]:
    """A stand-in agent of ``site`` and the children it recorded, once all of them run."""
    home = agents.agent_dir(paths, site)
    home.mkdir(parents=True)
    agent = spawn(f"agent@{site}", [sys.executable, "-c", AGENT, str(home), site],
                  log=home / "agent.log")
    # Four processes: the agent, its two parts, and the server's own child.
    wait_for(lambda: (home / "children.json").exists() and len(descendants(agent.pid)) == 3,
             timeout=20, what=f"the stand-in agent@{site} and its children", retry_on=())
    return agent, agents.children(paths, site, agent.name)


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    """agent@aws and agent@hetzner, each with its parts; all stopped by PID at the end."""
    paths = LabPaths(tmp_path)
    paths.root.mkdir(exist_ok=True)
    records: dict[str, ProcessRecord] = {}
    try:
        for site in SITES:
            agent, children = start_agent(paths, site)
            records |= {r.name: r for r in (agent, *children)}
        state = LabState(LabLayout(), datetime.now(UTC).isoformat(),
                         [records[f"agent@{s}"] for s in SITES], complete=True)
        paths.state_file.write_text(json.dumps(state.to_dict()))
        yield StandIn(LabFaults(tmp_path), records)
    finally:
        for record in records.values():
            signal_tree(record, signal.SIGKILL)  # by PID, whatever a test left frozen
            stop(record)


def stopped(pids: list[int]) -> None:
    wait_for(lambda: all(state_of(p) == "T" for p in pids), timeout=10, retry_on=(),
             what="the processes to stop")


def running(pids: list[int]) -> None:
    wait_for(lambda: all(state_of(p) != "T" for p in pids), timeout=10, retry_on=(),
             what="the processes to continue")


def test_the_lab_state_holds_each_agents_children_marked_with_their_parent(
    stand_in: StandIn,
) -> None:
    state = stand_in.faults.lab.state()
    assert state is not None
    assert [(p.name, p.parent) for p in state.processes] == [
        ("agent@aws", None), ("agent@hetzner", None),
        ("postgres@aws", "agent@aws"), ("app@aws", "agent@aws"),
        ("postgres@hetzner", "agent@hetzner"), ("app@hetzner", "agent@hetzner"),
    ]


def test_freeze_and_thaw_a_site_signal_its_agent_and_all_it_started(stand_in: StandIn) -> None:
    c = stand_in
    tree = c.tree("agent@aws")
    assert len(tree) == 4

    said = c.faults.freeze_site("aws")

    assert said == "froze agent@aws (4 processes)"
    stopped(tree)  # a signal is delivered when the kernel next schedules the process
    assert not any(state_of(p) == "T" for p in c.tree("agent@hetzner"))  # another site
    assert c.faults.thaw_site("aws") == "thawed agent@aws (4 processes)"
    running(tree)


def test_freeze_and_thaw_one_part_an_agent_started(stand_in: StandIn) -> None:
    c = stand_in
    assert c.faults.freeze_process("app@aws") == "froze app@aws (1 processes)"
    stopped([c.records["app@aws"].pid])
    assert state_of(c.records["postgres@aws"].pid) != "T"
    assert state_of(c.records["agent@aws"].pid) != "T"
    assert c.faults.thaw_process("app@aws") == "thawed app@aws (1 processes)"
    running([c.records["app@aws"].pid])


def test_killing_a_site_kills_its_agent_and_every_part_of_it(stand_in: StandIn) -> None:
    c = stand_in
    tree = c.tree("agent@aws")
    assert c.faults.kill_site("aws") == "killed agent@aws (4 processes)"
    assert not is_alive(c.records["agent@aws"])
    # Its parts, orphaned by the kill, are reaped by whoever adopted them.
    wait_for(lambda: all(state_of(p) in (None, "Z") for p in tree), timeout=10, retry_on=(),
             what="the site's parts to die")
    assert all(is_alive(c.records[f"{part}@hetzner"]) for part in ("agent", "postgres", "app"))


def test_a_part_is_found_by_where_it_listens(stand_in: StandIn) -> None:
    layout = LabLayout()
    faults = stand_in.faults
    assert faults.process_at(layout.address("aws"), layout.agent_port) == "agent@aws"
    assert faults.process_at(layout.address("hetzner"), layout.postgres_port) == \
        "postgres@hetzner"
    with pytest.raises(ProviderError, match=r"listens on 127\.0\.10\.1:1$") as caught:
        faults.process_at(layout.address("aws"), 1)
    assert caught.value.code == "unknown-part"


def test_what_the_lab_lacks_is_named(stand_in: StandIn) -> None:
    c = stand_in
    with pytest.raises(ProviderError, match="no processes at site 'spare'") as caught:
        c.faults.freeze_site("spare")
    assert caught.value.code == "unknown-site"
    with pytest.raises(ProviderError, match="no part named 'bind9'") as caught:
        c.faults.freeze_process("bind9")
    assert caught.value.code == "unknown-part"
    with pytest.raises(ProviderError, match=r"site 'spare' has no agent .*"
                       r"\(sites with one: aws, hetzner\)") as caught:
        c.faults.crash_database("spare")
    assert caught.value.code == "unknown-site"
    with pytest.raises(ProviderError, match="no provider API") as caught:
        c.faults.revoke_api_credentials("aws")
    assert caught.value.code == "unknown-site"


def test_without_a_lab_every_call_says_so(tmp_path: Path) -> None:
    faults = LabFaults(tmp_path)
    with pytest.raises(LabNotRunning, match="start one: failover lab up"):
        faults.freeze_site("aws")
    with pytest.raises(LabNotRunning):
        faults.crash_database("aws")


@pytest.mark.lab
def test_a_crash_kills_the_database_tree_only_and_its_agent_keeps_it_down(
    lab: RunningLab,
) -> None:
    # The standby, so that the session's lab keeps its primary; restored at the end.
    faults = LabFaults(lab.lab.paths.root)
    state = lab.lab.running_state()
    server, app = state.process("postgres@hetzner"), state.process("app@hetzner")
    assert server is not None and app is not None
    tree = [server.pid, *descendants(server.pid)]
    agent = agents.client(lab.layout, lab.lab.paths, "hetzner")
    try:
        try:
            said = faults.crash_database("hetzner")
            assert said.startswith("killed postgres@hetzner: ")
            assert said.endswith("its agent keeps it down")
            wait_for(lambda: all(state_of(p) in (None, "Z") for p in tree), timeout=10,
                     what="the server and its backends to go", retry_on=())
            assert is_alive(app)
            # Left down on purpose: the agent no longer wants it, so it never restarts it.
            report = agent.status(timeout=5)
            assert report["role"] == "down", report
            assert report["children"]["postgres"]["state"] == "stopped", report
            assert report["children"]["postgres"]["wanted"] is False, report
        finally:
            done = faults.restore_site("hetzner", "aws")  # the session's lab left whole
        assert any(line.startswith("postgres@hetzner: ") and line.endswith("standby of aws")
                   for line in done), done
        assert agent.status(timeout=5)["role"] == "standby"
    finally:
        agent.close()
