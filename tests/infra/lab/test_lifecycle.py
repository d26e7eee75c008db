"""``lab up`` and ``lab down`` on a lab of their own: idempotent, refusing, leaving nothing.

These start their own small labs on another subnet, so they do not disturb
the session's lab.
"""

from __future__ import annotations

import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hcloud import Client
from hcloud.images import Image
from hcloud.server_types import ServerType

from failover.processes import ProcessRecord, is_alive, stop
from failover.waiting import wait_for
from infra.lab import agents, hcloud_boot, servers
from infra.lab.exceptions import LabError, PortTaken
from infra.lab.lab import Lab, LabState
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets
from tests.conftest import free_port, private_tmpdir
from tests.infra.lab.booting import agent_user_data

SUBNET = "127.78"
SITE_PARTS = ("postgres", "app")  # what each site's agent starts and records as its children


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = private_tmpdir("failover-test-lifecycle-")
    try:
        yield path
    finally:
        Lab(path).down()  # whatever a test left running
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ProcessRecord]]:
    """Every process any lab records while the test runs (spied on the state file)."""
    seen: list[ProcessRecord] = []
    original = Lab._save

    def spy(self: Lab, state: LabState) -> None:
        seen.extend(p for p in state.processes if p not in seen)
        original(self, state)

    monkeypatch.setattr(Lab, "_save", spy)
    yield seen
    for record in seen:  # by PID and start time: a no-op for what `down` already stopped
        stop(record)


def test_the_lock_makes_a_missing_state_dir_and_keeps_one_that_is_there(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "lab"
    with Lab(fresh)._locked():
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o755  # whatever the umask
    kept = tmp_path / "kept"
    kept.mkdir(mode=0o700)
    with Lab(kept)._locked():  # there already (or made by another command): taken as it is
        assert stat.S_IMODE(kept.stat().st_mode) == 0o700
    assert Lab(kept).paths.lock_file.exists()


def _boot_spare_server(lab: Lab, layout: LabLayout) -> None:
    """Make a server at the spare site's provider, as a rebuild does, and wait until it runs."""
    client = Client(token=LabSecrets.load(lab.paths).hcloud_spare_token,
                    api_endpoint=layout.hcloud_spare_endpoint, timeout=10, poll_interval=0.1)
    data = agent_user_data(lab.paths.root, layout.address("spare"), layout.agent_port,
                           layout.postgres_port)
    made = client.servers.create(name="spare-app", server_type=ServerType(name="cx22"),
                                 image=Image(name="ubuntu-24.04"), user_data=data.user_data)
    made.action.wait_until_finished()
    assert made.server.public_net is not None and made.server.public_net.ipv4 is not None
    assert made.server.public_net.ipv4.ip == layout.address("spare")


def _gone(record: ProcessRecord) -> bool:
    """The process is gone (its PID, if in use at all, now has another start time)."""
    return not is_alive(record)


@pytest.mark.lab
def test_up_is_idempotent_and_down_leaves_no_process(
    state_dir: Path, recorded: list[ProcessRecord]
) -> None:
    lab = Lab(state_dir)
    layout = LabLayout(subnet=SUBNET, dns_port=free_port())
    state, started = lab.up(layout)
    assert started
    assert {p.name: p.parent for p in state.processes} == {
        "moto@aws": None, "moto@hetzner": None, "moto@spare": None, "route53@aws": None,
        "tls@aws": None, "tls@hetzner": None, "tls@spare": None, "ec2@aws": None,
        "hcloud@hetzner": None, "hcloud@spare": None, "bind9": None, "agent@aws": None,
        "etcd@aws": None, "etcd@hetzner": None, "etcd@spare": None,
        "agent@hetzner": None,
        "postgres@aws": "agent@aws", "app@aws": "agent@aws",
        "postgres@hetzner": "agent@hetzner", "app@hetzner": "agent@hetzner",
    }
    assert all(is_alive(p) for p in state.processes)

    again, started_again = lab.up(layout)
    assert not started_again
    assert again.processes == state.processes
    with pytest.raises(LabError, match="another layout"):
        lab.up(LabLayout(subnet=SUBNET, dns_port=free_port()))
    assert all(is_alive(p) for p in state.processes)

    # A server made at the spare site's provider boots an agent: the lab counts it and what
    # it started as parts of its own, and `down` stops them by PID like the rest.
    _boot_spare_server(lab, layout)
    state = lab.state() or state
    assert state.process("agent@spare") == hcloud_boot.records(lab.paths.root)[0].agent.child_of(
        "hcloud@spare")
    # Its database has an empty data dir: it exits at once and its agent starts it again
    # and again, so it is in the agent's records at one look and not at the next.
    restarting = {"postgres@spare": "agent@spare"}

    outcomes = lab.down()
    assert dict(outcomes)["agent@spare"] == "stopped"
    assert sorted(name for name, _ in outcomes if name not in restarting) == sorted(
        p.name for p in state.processes if p.name not in restarting)
    # An agent stops its own children; the lab then finds them already gone.
    parents = {p.name: p.parent for p in state.processes} | restarting
    assert all(outcome == "stopped" or (parents[name] and outcome == "not running")
               for name, outcome in outcomes), outcomes
    assert all(_gone(p) for p in [*recorded, *state.processes])
    assert not lab.paths.state_file.exists()
    assert not lab.paths.secrets.exists()
    assert not (lab.paths.root / hcloud_boot.SERVERS_DIR).exists()
    assert not (lab.paths.root / "etcd").exists()  # the members' data
    assert lab.down() == []  # nothing running: still fine


@pytest.mark.lab
def test_a_taken_port_is_refused_before_anything_starts(
    state_dir: Path, recorded: list[ProcessRecord]
) -> None:
    layout = LabLayout(subnet=SUBNET, dns_port=free_port())
    with socket.socket() as squatter:
        # An earlier test's server may have left connections in TIME_WAIT on this port.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((layout.address("hetzner"), layout.postgres_port))
        squatter.listen()
        with pytest.raises(PortTaken, match=rf"{layout.address('hetzner')}:5432/tcp is taken"):
            Lab(state_dir).up(layout)
    assert recorded == []
    assert not Lab(state_dir).paths.state_file.exists()


@pytest.mark.lab
def test_a_failure_half_way_stops_everything_already_started(
    state_dir: Path, recorded: list[ProcessRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    children: list[ProcessRecord] = []  # what agent@aws started before the failure

    def second_agent_fails(layout: LabLayout, paths: LabPaths, sites: Sequence[str],
                           started: Callable[[ProcessRecord, str], None]) -> None:
        started(agents.start(layout, paths, sites[0]), "the first agent")
        # Once the first agent has started its site's server and app, so that the
        # failure leaves children of an agent behind as well as the lab's own parts.
        wait_for(lambda: len(agents.children(paths, "aws", "agent@aws")) == len(SITE_PARTS),
                 timeout=30, what="agent@aws to start its children", retry_on=())
        children.extend(agents.children(paths, "aws", "agent@aws"))
        raise RuntimeError(f"injected failure starting agent@{sites[1]}")

    monkeypatch.setattr(servers, "start_agents", second_agent_fails)
    with pytest.raises(LabError, match="lab up failed: RuntimeError: injected failure"):
        Lab(state_dir).up(LabLayout(subnet=SUBNET, dns_port=free_port()))
    assert {p.name for p in recorded} >= {"postgres-init@aws", "agent@aws", "bind9", "etcd@aws"}
    assert {p.name for p in children} == {f"{part}@aws" for part in SITE_PARTS}
    assert all(_gone(p) for p in [*recorded, *children])
    assert not Lab(state_dir).paths.state_file.exists()


def test_status_of_no_lab_says_so_and_exits_non_zero(state_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "failover", "lab", "status", "--state-dir", str(state_dir)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 1
    assert f"no lab in {state_dir}" in done.stdout
