"""The lab's fake Hetzner Cloud API, driven by the real ``hcloud`` client.

The fake runs in this process (uvicorn in a thread, on a socket bound to
127.97.2.1), so these tests need no lab; the lab's own process of it is
exercised by tests/failover/watch/test_providers.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from hcloud import APIException, Client

from failover.waiting import wait_for
from infra.lab.hcloud_fake import FakeProject, create_app

ADDRESS = "127.97.2.1"  # this module's own loopback address (127.97 is these tests' subnet)
TOKEN, ADMIN = "project-token-" + "a" * 50, "admin-token-" + "b" * 52


@dataclass(frozen=True)
class Fake:
    """A running fake and what tests need of it."""

    project: FakeProject
    url: str  # the API's base, as hcloud's api_endpoint

    def client(self, token: str = TOKEN) -> Client:
        """The real hcloud client against the fake, with hcloud's retries off."""
        client = Client(token=token, api_endpoint=self.url, timeout=5)
        client._client._retry_max_retries = 0  # a refusal must surface, not be retried
        return client

    def control(self, what: str, token: str = ADMIN) -> httpx.Response:
        """POST to the fake's own control (``/_fake/...``)."""
        return httpx.post(f"{self.url.removesuffix('/v1')}/_fake/{what}", timeout=5,
                          headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def fake() -> Iterator[Fake]:
    project = FakeProject(TOKEN, ADMIN)
    for i in range(3):
        project.add_server(f"web-{i}", f"192.0.2.{10 + i}",
                           labels={"role": "db" if i == 2 else "web"})
    sock = socket.socket()
    sock.bind((ADDRESS, 0))
    server = uvicorn.Server(uvicorn.Config(create_app(project), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10, what="the fake to start", retry_on=())
        yield Fake(project, f"http://{ADDRESS}:{sock.getsockname()[1]}/v1")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.mark.lab  # uvicorn
def test_lists_servers_page_by_page_as_hetzner_does(fake: Fake) -> None:
    client = fake.client()
    page = client.servers.get_list(per_page=2)
    assert [s.name for s in page.servers] == ["web-0", "web-1"]
    assert page.meta.pagination is not None
    assert (page.meta.pagination.page, page.meta.pagination.next_page,
            page.meta.pagination.last_page, page.meta.pagination.total_entries) == (1, 2, 2, 3)
    assert [s.name for s in client.servers.get_all()] == ["web-0", "web-1", "web-2"]
    assert [s.name for s in client.servers.get_all(label_selector="role=db")] == ["web-2"]

    one = client.servers.get_by_name("web-1")
    assert one is not None
    again = client.servers.get_by_id(one.id)
    assert again.public_net.ipv4.ip == "192.0.2.11"
    assert again.status == "running"
    assert again.server_type.name == "cx22"
    assert again.location.name == "fsn1"


@pytest.mark.lab  # uvicorn
def test_a_power_action_is_an_action_that_finishes(fake: Fake) -> None:
    client = fake.client()
    server = client.servers.get_by_name("web-0")
    assert server is not None
    action = server.power_off()
    assert (action.command, action.status) == ("stop_server", "running")
    assert client.servers.get_by_id(server.id).status == "stopping"
    action.wait_until_finished(max_retries=1)  # the first look finds it finished
    assert (action.status, action.progress) == ("success", 100)
    assert client.servers.get_by_id(server.id).status == "off"

    started = client.actions.get_by_id(server.power_on().id)
    assert (started.command, started.status) == ("start_server", "success")
    assert started.resources == [{"id": server.id, "type": "server"}]
    assert client.servers.get_by_id(server.id).status == "running"
    for verb, command in (("shutdown", "shutdown_server"), ("reboot", "reboot_server")):
        assert getattr(server, verb)().command == command


@pytest.mark.lab  # uvicorn
def test_a_wrong_or_missing_token_is_unauthorized_in_hetzners_shape(fake: Fake) -> None:
    with pytest.raises(APIException) as refused:
        fake.client("not-the-token").servers.get_all()
    assert refused.value.code == "unauthorized"

    bare = httpx.get(f"{fake.url}/servers", timeout=5)
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "unauthorized"
    assert set(bare.json()["error"]) >= {"code", "message"}


@pytest.mark.lab  # uvicorn
def test_an_unknown_server_is_not_found(fake: Fake) -> None:
    with pytest.raises(APIException) as missing:
        fake.client().servers.get_by_id(999999)
    assert missing.value.code == "not_found"


@pytest.mark.lab  # uvicorn
def test_a_blocked_project_refuses_every_call_until_unblocked(fake: Fake) -> None:
    client = fake.client()
    server = client.servers.get_all()[0]
    # The project's own token cannot use the fake's control.
    assert fake.control("block", token=TOKEN).status_code == 401
    assert not fake.project.blocked

    blocked = fake.control("block")
    assert blocked.status_code == 200
    assert blocked.json()["blocked"] is True
    calls = (client.servers.get_all, lambda: client.servers.get_by_id(server.id),
             server.power_off)
    for call in calls:
        with pytest.raises(APIException) as refused:
            call()
        assert refused.value.code == "forbidden"
    raw = httpx.get(f"{fake.url}/servers", timeout=5,
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 403

    assert fake.control("unblock").json()["blocked"] is False
    assert [s.name for s in client.servers.get_all()] == ["web-0", "web-1", "web-2"]


def test_the_project_does_not_show_its_tokens() -> None:
    project = FakeProject(TOKEN, ADMIN)
    assert TOKEN not in repr(project)
    assert ADMIN not in repr(project)
