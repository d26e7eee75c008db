"""Provisioning in the lab's FAKE Hetzner Cloud API: servers made, booted and deleted.

The endpoints a rebuild needs, in the real API's shapes, so that the real
``hcloud`` client works against the fake unchanged:

- ``POST /v1/primary_ips``, ``GET /v1/primary_ips`` (``name``, ``label_selector``,
  ``ip``), ``GET|DELETE /v1/primary_ips/{id}``;
- ``POST /v1/firewalls``, ``GET /v1/firewalls`` (``name``, ``label_selector``),
  ``GET|DELETE /v1/firewalls/{id}``;
- ``POST /v1/networks``, ``GET /v1/networks`` (``name``, ``label_selector``),
  ``GET|DELETE /v1/networks/{id}``;
- ``POST /v1/servers``: 201 with ``server`` (``initializing``), ``action``
  (``create_server``), ``next_actions`` (``start_server``, one
  ``attach_to_network`` per network) and ``root_password``;
  ``DELETE /v1/servers/{id}``: 200 with the ``delete_server`` action.

A server made with ``user_data`` is booted (``infra.lab.hcloud_boot``): its
files are written and its agent started beside the event loop; it turns
``running`` once the agent runs, and its actions finish when that is done.
Deleting it stops that agent by its PID; the ``delete_server`` action
finishes once it stopped. User-data the fake cannot boot is refused with 422
``invalid_input`` before anything is made. A deleted server's files stay
under the root (``lab down`` wipes them with the rest).

Servers have no IPv6 (``public_net.ipv6`` stays null) and are made only
started (``start_after_create``); SSH keys, volumes and placement groups are
refused. A body with a field the fake does not know is refused (400
``invalid_input``) where the real API might ignore it: a caller's typo shows
here, not in production.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Response
from pydantic import Field

from failover.processes import is_alive
from infra.lab import hcloud_boot
from infra.lab.hcloud_network import (
    FirewallIn,
    Network,
    NetworkIn,
    PrimaryIpIn,
    StrictBody,
    location_of,
    unique,
)
from infra.lab.hcloud_project import (
    IMAGES,
    PER_PAGE_DEFAULT,
    PER_PAGE_MAX,
    SERVER_TYPES,
    FakeApiError,
    FakeProject,
    invalid,
    paginate,
    select,
)

# RFC 1123 (with at most 253 characters), as Hetzner wants a server's name.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = rf"^{_LABEL}(\.{_LABEL})*$"
DEFAULT_LOCATION = "fsn1"


class PublicNetIn(StrictBody):
    """A new server's public network: a primary IPv4 by id, or one made for it."""

    enable_ipv4: bool = True
    enable_ipv6: bool = True
    ipv4: int | None = None
    ipv6: int | None = None


class FirewallRef(StrictBody):
    """``{"firewall": N}``."""

    firewall: int


class ServerIn(StrictBody):
    """``POST /servers``."""

    name: str = Field(pattern=HOSTNAME, max_length=253)
    server_type: str | int
    image: str | int
    location: str | int | None = None
    datacenter: str | int | None = None
    start_after_create: bool | None = True
    user_data: str | None = Field(None, max_length=32 * 1024)
    labels: dict[str, str] = Field(default_factory=dict)
    firewalls: list[FirewallRef] = Field(default_factory=list)
    networks: list[int] = Field(default_factory=list)
    public_net: PublicNetIn | None = None
    ssh_keys: list[str | int] = Field(default_factory=list)
    volumes: list[int] = Field(default_factory=list)
    placement_group: int | None = None
    automount: bool | None = None


def _named(catalog: dict[str, dict[str, Any]], key: str | int, what: str) -> str:
    found = next((name for name, d in catalog.items() if key in (d["id"], name)), None)
    if found is None:
        raise invalid(what, f"{what} {key!r} not found (the fake knows {', '.join(catalog)})")
    return found


@dataclass
class Provisioning:
    """The fake's provisioning: its resources, and the servers it boots under ``root``."""

    project: FakeProject
    network: Network
    root: Path | None = None  # where booted servers write their files; None: boots nothing
    booting: dict[int, asyncio.Future[Any]] = field(default_factory=dict)

    def adopt(self) -> None:
        """Take back the servers an earlier run of the fake booted (their records)."""
        if self.root is None:
            return
        for booted in hcloud_boot.records(self.root):
            server = copy.deepcopy(booted.server)
            alive = is_alive(booted.agent)
            server.update(status="running" if alive else "off", private_net=[])
            server["public_net"]["firewalls"] = []  # firewalls and networks are not recorded
            self.project.servers[server["id"]] = server
            if booted.primary_ip is not None:
                self.network.primary_ips[booted.primary_ip["id"]] = booted.primary_ip
        self.project.ids_above([*self.project.servers, *self.network.primary_ips])

    def _checked(self, body: ServerIn) -> tuple[str, hcloud_boot.BootPlan | None]:
        """The new server's location and boot plan; raises before anything is made."""
        for unsupported in ("ssh_keys", "volumes", "placement_group"):
            if getattr(body, unsupported):
                raise invalid(unsupported, f"{unsupported} are not supported by the fake")
        if body.start_after_create is False:
            raise invalid("start_after_create", "the fake makes servers started only")
        unique(self.project.servers, body.name, "server")
        for ref in body.firewalls:
            self.network.firewall(ref.firewall)
        for network_id in body.networks:
            if not self.network.network(network_id)["subnets"]:
                raise invalid("networks", f"network {network_id} has no subnet to attach to")
        location = location_of(body.location, body.datacenter)
        public = body.public_net or PublicNetIn()
        if public.ipv4 is not None and not public.enable_ipv4:
            raise invalid("public_net.ipv4", "a primary IPv4 for a server without IPv4")
        if public.enable_ipv4 and public.ipv4 is not None:
            ip = self.network.primary_ip(public.ipv4)
            if ip["assignee_id"] is not None:
                raise FakeApiError(422, "primary_ip_assigned", f"primary IP {ip['id']} is "
                                   f"assigned to server {ip['assignee_id']}")
            if location not in (None, ip["location"]["name"]):
                raise FakeApiError(422, "primary_ip_datacenter_mismatch", f"primary IP "
                                   f"{ip['id']} is in {ip['location']['name']}, not {location}")
            location = ip["location"]["name"]
        elif public.enable_ipv4:
            self.network.free_address()  # raises when the pool is used up
        if body.user_data is None:
            return location or DEFAULT_LOCATION, None
        if self.root is None:
            raise FakeApiError(422, "invalid_input", "this fake was started without --root: "
                               "it cannot boot a server's user_data")
        try:
            return location or DEFAULT_LOCATION, hcloud_boot.interpret(body.user_data,
                                                                       self.root)
        except hcloud_boot.BadUserData as exc:
            raise FakeApiError(422, "invalid_input", f"user_data: {exc}",
                               {"fields": [{"name": "user_data", "messages": [str(exc)]}]}) \
                from None

    def create_server(self, body: ServerIn) -> dict[str, Any]:
        """``POST /servers``: make the server, boot it beside the loop; the answer's body."""
        server_type = _named(SERVER_TYPES, body.server_type, "server_type")
        image = _named(IMAGES, body.image, "image")
        location, plan = self._checked(body)
        public = body.public_net or PublicNetIn()
        server_id = self.project.add_server(body.name, None, body.labels,
                                            server_type=server_type, location=location,
                                            image=image)
        server = self.project.servers[server_id]
        server["status"] = "initializing"
        ip = None
        if public.ipv4 is not None:
            ip = self.network.primary_ip(public.ipv4)
        elif public.enable_ipv4:  # one made for it, gone with it (as Hetzner does)
            ip = self.network.new_primary_ip(f"primary_ip-{self.project.new_id()}", location,
                                             {}, auto_delete=True)
        if ip is not None:
            self.network.assign(ip, server)
        for ref in body.firewalls:
            self.network.apply(ref.firewall, server)
        attached = [self.network.attach(n, server) for n in body.networks]
        shown = copy.deepcopy(server)
        work = None
        if plan is not None:
            work = self._boot(plan, shown, copy.deepcopy(ip))
        else:
            server["status"] = "running"  # nothing to boot: up at once
        action = self.project.add_action("create_server", [(server_id, "server")], work=work)
        start = self.project.add_action("start_server", [(server_id, "server")], work=work)
        return {"server": shown, "action": action, "next_actions": [start, *attached],
                "root_password": secrets.token_urlsafe(12)}

    def _boot(self, plan: hcloud_boot.BootPlan, server: dict[str, Any],
              ip: dict[str, Any] | None) -> asyncio.Future[Any]:
        """Boot the server beside the event loop; it turns running once its agent runs."""
        assert self.root is not None
        work = asyncio.get_running_loop().run_in_executor(
            None, partial(hcloud_boot.boot, plan, self.root, server, ip))
        server_id = server["id"]
        self.booting[server_id] = work

        def booted(done: asyncio.Future[Any]) -> None:  # on the loop: the project is ours
            self.booting.pop(server_id, None)
            failed = done.exception()
            if failed is not None:
                print(f"hcloud_fake: booting server {server['name']} failed: {failed}",
                      file=sys.stderr)
            if server_id in self.project.servers:
                self.project.servers[server_id]["status"] = "off" if failed else "running"

        work.add_done_callback(booted)
        return work

    async def delete_server(self, server_id: int) -> dict[str, Any]:
        """``DELETE /servers/{id}``: gone at once; its agent stopped beside the loop."""
        self.project.server(server_id)  # not_found, before any wait
        booting = self.booting.get(server_id)
        if booting is not None:
            await asyncio.wait([booting])  # a half-booted server would leave its agent behind
        server = self.project.server(server_id)  # another delete may have come first
        del self.project.servers[server_id]
        self.network.release(server)
        work = None
        if self.root is not None:
            work = asyncio.get_running_loop().run_in_executor(
                None, partial(hcloud_boot.shut_down, self.root, server["name"]))
        return {"action": self.project.add_action("delete_server", [(server_id, "server")],
                                                  work=work)}


Paging = tuple[int, int]


def paging(page: Annotated[int, Query(ge=1)] = 1,
           per_page: Annotated[int, Query(ge=1, le=PER_PAGE_MAX)] = PER_PAGE_DEFAULT) -> Paging:
    """The page asked for."""
    return page, per_page


def _resource(app: FastAPI, api: list[Any], kind: str, items: dict[int, dict[str, Any]],
              one: Callable[[int], dict[str, Any]], delete: Callable[[int], None]) -> None:
    """``GET /v1/<kind>s`` (by name, labels, ip), ``GET`` and ``DELETE /v1/<kind>s/{id}``."""

    async def listing(page: Annotated[Paging, Depends(paging)], name: str | None = None,
                      label_selector: str | None = None, ip: str | None = None,
                      ) -> dict[str, Any]:
        found = [r for r in select(items, name, label_selector) if ip in (None, r.get("ip"))]
        return paginate(found, f"{kind}s", *page)

    async def get(resource_id: int) -> dict[str, Any]:
        return {kind: one(resource_id)}

    async def remove(resource_id: int) -> Response:
        delete(resource_id)
        return Response(status_code=204)

    app.get(f"/v1/{kind}s", dependencies=api)(listing)
    app.get(f"/v1/{kind}s/{{resource_id}}", dependencies=api)(get)
    app.delete(f"/v1/{kind}s/{{resource_id}}", dependencies=api)(remove)


def register(app: FastAPI, provisioning: Provisioning, api: list[Any]) -> None:
    """Serve provisioning on ``app``, every endpoint behind the ``api`` dependencies."""
    network = provisioning.network

    @app.post("/v1/primary_ips", dependencies=api, status_code=201)
    async def create_primary_ip(body: PrimaryIpIn) -> dict[str, Any]:
        return network.create_primary_ip(body)

    @app.post("/v1/firewalls", dependencies=api, status_code=201)
    async def create_firewall(body: FirewallIn) -> dict[str, Any]:
        return network.create_firewall(body)

    @app.post("/v1/networks", dependencies=api, status_code=201)
    async def create_network(body: NetworkIn) -> dict[str, Any]:
        return network.create_network(body)

    _resource(app, api, "primary_ip", network.primary_ips, network.primary_ip,
              network.delete_primary_ip)
    _resource(app, api, "firewall", network.firewalls, network.firewall,
              network.delete_firewall)
    _resource(app, api, "network", network.networks, network.network, network.delete_network)

    @app.post("/v1/servers", dependencies=api, status_code=201)
    async def create_server(body: ServerIn) -> dict[str, Any]:
        return provisioning.create_server(body)

    @app.delete("/v1/servers/{server_id}", dependencies=api)
    async def delete_server(server_id: int) -> dict[str, Any]:
        return await provisioning.delete_server(server_id)
