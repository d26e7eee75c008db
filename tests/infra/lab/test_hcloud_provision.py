"""Provisioning at the spare site's fake Hetzner Cloud API, driven by the real ``hcloud`` client.

The fake runs alone, as the lab runs ``hcloud@spare`` (a process with a root
dir and an address pool), on 127.94, a subnet of this module's own. A server
made with an agent's cloud-config starts that agent for real; every PID
started here is stopped at the end, by its record.
"""

from __future__ import annotations

import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hcloud import APIException, Client
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.server_types import ServerType
from hcloud.servers import CreateServerResponse, ServerCreatePublicNetwork

from failover.agent.client import AgentClient
from failover.exceptions import ProviderError
from failover.processes import ProcessRecord, is_alive, spawn, stop
from failover.secretfiles import write_private
from failover.waiting import wait_for
from infra.lab import hcloud_boot
from tests.conftest import free_port, private_tmpdir, starts_servers
from tests.infra.lab.booting import AgentData, agent_user_data

pytestmark = pytest.mark.lab

ADDRESS = "127.94.30.1"  # the spare site's address in a lab on 127.94
PART = "hcloud@spare"


@dataclass
class Spare:
    """The fake, its root, and a way to restart it."""

    root: Path
    port: int
    token: str
    record: ProcessRecord | None = None

    def start(self) -> None:
        """Start the fake (again) and wait until it answers."""
        argv = [sys.executable, "-m", "infra.lab.hcloud_fake", "--host", ADDRESS,
                "--port", str(self.port), "--token-file", str(self.root / "token"),
                "--admin-token-file", str(self.root / "admin-token"),
                "--root", str(self.root), "--address-pool", ADDRESS]
        self.record = spawn(PART, argv, log=self.root / "hcloud.log")
        wait_for(lambda: httpx.get(f"{self.url}/servers", timeout=1,
                                   headers={"Authorization": f"Bearer {self.token}"}).is_success,
                 timeout=30, what=f"{PART} to answer", retry_on=httpx.TransportError)

    @property
    def url(self) -> str:
        """The API's base, as hcloud's api_endpoint."""
        return f"http://{ADDRESS}:{self.port}/v1"

    def client(self) -> Client:
        """The real hcloud client, polling actions fast and never retrying a refusal."""
        client = Client(token=self.token, api_endpoint=self.url, timeout=10, poll_interval=0.1,
                        poll_max_retries=300)
        client._client._retry_max_retries = 0
        return client

    def user_data(self, config_path: Path | None = None) -> AgentData:
        """An agent's cloud-config whose files live under the fake's root."""
        return agent_user_data(self.root, ADDRESS, free_port(), free_port(),
                               config_path=config_path)


@pytest.fixture(scope="module")
@starts_servers
def spare() -> Iterator[Spare]:
    root = private_tmpdir("failover-test-hcloud-spare-")
    token = secrets.token_hex(32)
    write_private(root / "token", token + "\n")
    write_private(root / "admin-token", secrets.token_hex(32) + "\n")
    fake = Spare(root, free_port(), token)
    try:
        fake.start()
        yield fake
    finally:
        if fake.record is not None:
            stop(fake.record)
        for record in hcloud_boot.processes(root, PART):  # whatever a failed test left
            stop(record)
        shutil.rmtree(root, ignore_errors=True)


def _answers(data: AgentData) -> dict[str, object]:
    agent = AgentClient(data.url, data.secret.encode(), site="spare", timeout=2)
    try:
        return wait_for(lambda: agent.status(timeout=1.0), timeout=30,
                        what="the booted agent to answer", retry_on=ProviderError)
    finally:
        agent.close()


def _refused(call: Callable[[], object]) -> str:
    with pytest.raises(APIException) as refused:
        call()
    return str(refused.value.code)


def test_a_server_made_with_an_agents_cloud_config_runs_it_until_deleted(spare: Spare) -> None:
    client = spare.client()
    fsn1 = Location(name="fsn1")
    ip = client.primary_ips.create(type="ipv4", name="spare-ipv4", location=fsn1,
                                   assignee_type="server", labels={"site": "spare"}).primary_ip
    assert (ip.ip, ip.assignee_id, ip.location.name) == (ADDRESS, None, "fsn1")
    assert _refused(lambda: client.primary_ips.create(  # the pool has one address
        type="ipv4", name="another", location=fsn1)) == "resource_limit_exceeded"
    firewall = client.firewalls.create(name="spare-agent", rules=[FirewallRule(
        direction="in", protocol="tcp", port="7070", source_ips=["127.0.0.0/8"])]).firewall
    network = client.networks.create(name="spare-net", ip_range="10.30.0.0/16", subnets=[
        NetworkSubnet(type="cloud", ip_range="10.30.1.0/24", network_zone="eu-central")])
    data = spare.user_data()

    def create(name: str) -> CreateServerResponse:
        return client.servers.create(
            name=name, server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04"),
            location=fsn1, user_data=data.user_data, labels={"site": "spare"},
            firewalls=[firewall], networks=[network],
            public_net=ServerCreatePublicNetwork(ipv4=ip, enable_ipv6=False))

    made = create("spare-app")
    assert made.server.status == "initializing"
    assert made.root_password
    assert [a.command for a in made.next_actions] == ["start_server", "attach_to_network"]
    for action in (made.action, *made.next_actions):
        action.wait_until_finished()
    server = client.servers.get_by_id(made.server.id)
    assert server.status == "running"
    assert server.public_net.ipv4.ip == ADDRESS
    assert server.public_net.firewalls[0].firewall.id == firewall.id
    assert server.private_net[0].network.id == network.id
    assert [s.name for s in client.servers.get_all(label_selector="site=spare")] == ["spare-app"]
    assert client.primary_ips.get_by_name("spare-ipv4").assignee_id == server.id

    # It booted: its files are under the root, and its agent answers, signed with its secret.
    assert stat.S_IMODE(data.secret_path.stat().st_mode) == 0o600
    assert _answers(data)["site"] == "spare"
    [booted] = hcloud_boot.records(spare.root)
    assert booted.agent.name == "agent@spare" and is_alive(booted.agent)
    assert (spare.root / "logs" / "agent@spare.log").exists()

    # Names are a project's own: a second of any kind is refused.
    assert _refused(lambda: create("spare-app")) == "uniqueness_error"
    assert _refused(lambda: client.primary_ips.create(
        type="ipv4", name="spare-ipv4", location=fsn1)) == "uniqueness_error"
    assert _refused(lambda: client.firewalls.create(name="spare-agent")) == "uniqueness_error"
    assert _refused(lambda: client.networks.create(name="spare-net",
                                                   ip_range="10.31.0.0/16")) == "uniqueness_error"
    assert _refused(lambda: client.primary_ips.delete(ip)) == "server_not_stopped"
    assert _refused(lambda: client.firewalls.delete(firewall)) == "resource_in_use"

    # A restarted fake leaves the agent running and still knows its server.
    assert spare.record is not None
    stop(spare.record)
    assert is_alive(booted.agent)
    spare.start()
    client = spare.client()
    assert client.servers.get_by_name("spare-app").status == "running"

    client.servers.delete(server).wait_until_finished()
    assert not is_alive(booted.agent)
    assert hcloud_boot.records(spare.root) == []
    assert client.servers.get_by_name("spare-app") is None
    assert _refused(lambda: client.servers.get_by_id(server.id)) == "not_found"
    kept = client.primary_ips.get_by_name("spare-ipv4")  # not auto_delete: kept, unassigned
    assert kept.assignee_id is None
    assert client.primary_ips.delete(kept)
    assert client.primary_ips.get_all() == []


def test_user_data_it_cannot_boot_is_refused_and_nothing_is_made(spare: Spare) -> None:
    client = spare.client()
    ips = len(client.primary_ips.get_all())
    data = spare.user_data(spare.root / "refused" / "agent.yaml")
    outside = data.user_data.replace(str(data.secret_path), "/etc/failover/agent.secret")
    for user_data in ("#!/bin/sh\necho hello\n", outside):
        with pytest.raises(APIException) as refused:
            client.servers.create(name="spare-bad", server_type=ServerType(name="cx22"),
                                  image=Image(name="ubuntu-24.04"), user_data=user_data)
        assert refused.value.code == "invalid_input"
        assert "user_data" in refused.value.message
    raw = httpx.post(f"{spare.url}/servers", timeout=5, json={
        "name": "spare-bad", "server_type": "cx22", "image": "ubuntu-24.04",
        "user_data": outside}, headers={"Authorization": f"Bearer {spare.token}"})
    assert raw.status_code == 422
    assert client.servers.get_by_name("spare-bad") is None
    assert len(client.primary_ips.get_all()) == ips  # none was made for it
    assert not (spare.root / "servers" / "spare-bad.json").exists()
    assert not data.config_path.exists()
    assert _refused(lambda: client.servers.create(
        name="Not_A_Hostname", server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"))) == "invalid_input"
    assert _refused(lambda: client.servers.create(
        name="spare-odd", server_type=ServerType(name="cx99"),
        image=Image(name="ubuntu-24.04"))) == "invalid_input"
