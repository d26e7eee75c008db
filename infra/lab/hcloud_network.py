"""The network side of the lab's FAKE Hetzner Cloud API: primary IPs, firewalls, networks.

The resources a new server is made with, kept in memory as the real API
shows them (``infra.lab.hcloud_provision`` serves them). A primary IPv4 is
the next free address of the fake's pool (``--address-pool``: in the lab, the
spare site's loopback address), so a server made with it is reached where
the lab expects its site. Firewalls and networks are bookkeeping only: the
lab filters no traffic and has no private network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.lab.hcloud_project import (
    DATACENTERS,
    LOCATIONS,
    FakeApiError,
    FakeProject,
    find,
    invalid,
    now,
)

_PORT = re.compile(r"(any|[0-9]{1,5}(-[0-9]{1,5})?)")
Labels = dict[str, str]


class StrictBody(BaseModel):
    """A request's body: a field the fake does not know is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class PrimaryIpIn(StrictBody):
    """``POST /primary_ips``."""

    name: str = Field(min_length=1, max_length=128)
    type: Literal["ipv4", "ipv6"]
    assignee_type: Literal["server"] = "server"
    assignee_id: int | None = None
    datacenter: str | int | None = None
    location: str | int | None = None
    auto_delete: bool | None = False
    labels: Labels = Field(default_factory=dict)


class RuleIn(StrictBody):
    """One rule of a firewall, as the client sends it."""

    direction: Literal["in", "out"]
    protocol: Literal["tcp", "udp", "icmp", "esp", "gre"]
    port: str | None = None
    source_ips: list[str] = Field(default_factory=list)
    destination_ips: list[str] = Field(default_factory=list)
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RuleIn:
        if (self.protocol in ("tcp", "udp")) != (self.port is not None):
            raise ValueError("port is required for tcp and udp, and only for them")
        if self.port is not None and not _PORT.fullmatch(self.port):
            raise ValueError(f"port {self.port!r} must be a port, a range (80-85) or 'any'")
        ips = self.source_ips if self.direction == "in" else self.destination_ips
        if not ips:
            raise ValueError(f"{'source' if self.direction == 'in' else 'destination'}_ips "
                             f"are required for direction {self.direction}")
        for ip in (*self.source_ips, *self.destination_ips):
            ipaddress.ip_network(ip, strict=False)  # a ValueError names the bad one
        return self


class IdRef(StrictBody):
    """``{"id": N}``."""

    id: int


class ApplyIn(StrictBody):
    """Where a firewall applies: servers by id (the fake has no label selectors)."""

    type: Literal["server"]
    server: IdRef


class FirewallIn(StrictBody):
    """``POST /firewalls``."""

    name: str = Field(min_length=1, max_length=128)
    labels: Labels = Field(default_factory=dict)
    rules: list[RuleIn] = Field(default_factory=list)
    apply_to: list[ApplyIn] = Field(default_factory=list)


class SubnetIn(StrictBody):
    """One subnet of a network."""

    type: Literal["cloud", "server", "vswitch"]
    ip_range: str
    network_zone: str
    vswitch_id: int | None = None


class RouteIn(StrictBody):
    """One route of a network."""

    destination: str
    gateway: str


class NetworkIn(StrictBody):
    """``POST /networks``."""

    name: str = Field(min_length=1, max_length=128)
    ip_range: str
    subnets: list[SubnetIn] = Field(default_factory=list)
    routes: list[RouteIn] = Field(default_factory=list)
    labels: Labels = Field(default_factory=dict)
    expose_routes_to_vswitch: bool | None = False

    @model_validator(mode="after")
    def _inside(self) -> NetworkIn:
        whole = ipaddress.IPv4Network(self.ip_range)
        if not whole.is_private:
            raise ValueError(f"ip_range {self.ip_range} must be a private range (RFC 1918)")
        for subnet in self.subnets:
            if not ipaddress.IPv4Network(subnet.ip_range).subnet_of(whole):
                raise ValueError(f"subnet {subnet.ip_range} is not inside {self.ip_range}")
        return self


def unique(resources: dict[int, dict[str, Any]], name: str, kind: str) -> None:
    """Refuse a second resource of a kind with the same name: Hetzner's ``uniqueness_error``."""
    if any(r["name"] == name for r in resources.values()):
        raise FakeApiError(409, "uniqueness_error", f"{kind} name is already used",
                           {"fields": [{"name": "name", "messages": ["is already used"]}]})


def location_of(location: str | int | None, datacenter: str | int | None) -> str | None:
    """The location named by ``location`` or ``datacenter`` (by name or id), or None."""
    for key, value, known in (("location", location, LOCATIONS),
                              ("datacenter", datacenter, DATACENTERS)):
        if value is None:
            continue
        found = next((d for d in known.values() if value in (d["id"], d["name"])), None)
        if found is None:
            raise invalid(key, f"{key} {value!r} not found (the fake knows "
                               f"{', '.join(known)})")
        return str(found["location"]["name"] if key == "datacenter" else found["name"])
    return None


@dataclass
class Network:
    """The project's primary IPs, firewalls and networks, and the fake's address pool."""

    project: FakeProject
    pool: tuple[str, ...] = ()
    primary_ips: dict[int, dict[str, Any]] = field(default_factory=dict)
    firewalls: dict[int, dict[str, Any]] = field(default_factory=dict)
    networks: dict[int, dict[str, Any]] = field(default_factory=dict)

    # -- primary IPs -------------------------------------------------------------------

    def primary_ip(self, ip_id: int) -> dict[str, Any]:
        """One primary IP, or not_found."""
        return find(self.primary_ips, ip_id, "primary_ip")

    def free_address(self) -> str:
        """The pool's first address no primary IP holds; ``resource_limit_exceeded`` if none."""
        held = {ip["ip"] for ip in self.primary_ips.values()}
        free = next((a for a in self.pool if a not in held), None)
        if free is None:
            raise FakeApiError(403, "resource_limit_exceeded", "no IPv4 address left in the "
                               f"fake's pool ({', '.join(self.pool) or 'empty'}: --address-pool)")
        return free

    def new_primary_ip(self, name: str, location: str, labels: Labels,
                       auto_delete: bool) -> dict[str, Any]:
        """A new, unassigned primary IPv4 from the pool."""
        unique(self.primary_ips, name, "primary_ip")
        address, ip_id = self.free_address(), self.project.new_id()
        datacenter = next(d for d in DATACENTERS.values() if d["location"]["name"] == location)
        self.primary_ips[ip_id] = {
            "id": ip_id, "name": name, "ip": address, "type": "ipv4", "assignee_id": None,
            "assignee_type": "server", "auto_delete": auto_delete, "blocked": False,
            "created": now(), "datacenter": datacenter, "location": LOCATIONS[location],
            "dns_ptr": [{"ip": address, "dns_ptr": f"static.{address}.clients.your-server.de"}],
            "labels": labels, "protection": {"delete": False},
        }
        return self.primary_ips[ip_id]

    def assign(self, ip: dict[str, Any], server: dict[str, Any]) -> None:
        """Make ``ip`` the server's public IPv4."""
        ip["assignee_id"] = server["id"]
        server["public_net"]["ipv4"] = {"id": ip["id"], "ip": ip["ip"], "blocked": False,
                                        "dns_ptr": ip["dns_ptr"][0]["dns_ptr"]}

    def create_primary_ip(self, body: PrimaryIpIn) -> dict[str, Any]:
        """``POST /primary_ips``: the answer's body."""
        if body.type != "ipv4":
            raise invalid("type", "the fake hands out IPv4 addresses only")
        action = None
        if body.assignee_id is not None:
            server = self.project.server(body.assignee_id)
            if server["public_net"]["ipv4"] is not None:
                raise FakeApiError(422, "server_has_ipv4", "the server has a public IPv4")
            if server["status"] != "off":
                raise FakeApiError(422, "server_not_stopped", "the server must be off")
            location = server["location"]["name"]
        else:
            location = location_of(body.location, body.datacenter) or ""
            if not location:
                raise invalid("datacenter", "give a location, a datacenter or an assignee_id")
        ip = self.new_primary_ip(body.name, location, body.labels, bool(body.auto_delete))
        if body.assignee_id is not None:
            self.assign(ip, self.project.server(body.assignee_id))
            action = self.project.add_action("create_primary_ip", [
                (ip["id"], "primary_ip"), (body.assignee_id, "server")])
        return {"primary_ip": ip, "action": action}

    def delete_primary_ip(self, ip_id: int) -> None:
        """``DELETE /primary_ips/{id}``: its server, if any, must be off."""
        ip = self.primary_ip(ip_id)
        server = self.project.servers.get(ip["assignee_id"] or -1)
        if server is not None:
            if server["status"] != "off":
                raise FakeApiError(422, "server_not_stopped", f"the primary IP is assigned "
                                   f"to server {server['id']}, which must be off")
            server["public_net"]["ipv4"] = None
        del self.primary_ips[ip_id]

    # -- firewalls ---------------------------------------------------------------------

    def firewall(self, firewall_id: int) -> dict[str, Any]:
        """One firewall, or not_found."""
        return find(self.firewalls, firewall_id, "firewall")

    def create_firewall(self, body: FirewallIn) -> dict[str, Any]:
        """``POST /firewalls``: the answer's body, with an ``apply_firewall`` action per server."""
        unique(self.firewalls, body.name, "firewall")
        servers = [self.project.server(apply.server.id) for apply in body.apply_to]
        firewall_id = self.project.new_id()
        self.firewalls[firewall_id] = {
            "id": firewall_id, "name": body.name, "labels": body.labels, "created": now(),
            "rules": [rule.model_dump() for rule in body.rules], "applied_to": [],
        }
        return {"firewall": self.firewalls[firewall_id],
                "actions": [self.apply(firewall_id, server) for server in servers]}

    def apply(self, firewall_id: int, server: dict[str, Any]) -> dict[str, Any]:
        """Apply a firewall to a server; returns the ``apply_firewall`` action."""
        self.firewalls[firewall_id]["applied_to"].append(
            {"type": "server", "server": {"id": server["id"]}})
        server["public_net"]["firewalls"].append({"id": firewall_id, "status": "applied"})
        return self.project.add_action("apply_firewall", [(firewall_id, "firewall"),
                                                          (server["id"], "server")])

    def delete_firewall(self, firewall_id: int) -> None:
        """``DELETE /firewalls/{id}``: refused while it applies to a server."""
        if self.firewall(firewall_id)["applied_to"]:
            raise FakeApiError(422, "resource_in_use", f"firewall with ID '{firewall_id}' is "
                               "still applied to a server")
        del self.firewalls[firewall_id]

    # -- networks ----------------------------------------------------------------------

    def network(self, network_id: int) -> dict[str, Any]:
        """One network, or not_found."""
        return find(self.networks, network_id, "network")

    def create_network(self, body: NetworkIn) -> dict[str, Any]:
        """``POST /networks``: the answer's body."""
        unique(self.networks, body.name, "network")
        gateway = str(next(ipaddress.IPv4Network(body.ip_range).hosts()))
        network_id = self.project.new_id()
        self.networks[network_id] = {
            "id": network_id, "name": body.name, "ip_range": body.ip_range,
            "subnets": [{**s.model_dump(), "gateway": gateway} for s in body.subnets],
            "routes": [r.model_dump() for r in body.routes], "servers": [],
            "load_balancers": [], "protection": {"delete": False}, "labels": body.labels,
            "created": now(), "expose_routes_to_vswitch": bool(body.expose_routes_to_vswitch),
        }
        return {"network": self.networks[network_id]}

    def attach(self, network_id: int, server: dict[str, Any]) -> dict[str, Any]:
        """Attach a server to a network's first subnet; returns the ``attach_to_network`` action."""
        network = self.network(network_id)
        if not network["subnets"]:
            raise invalid("networks", f"network {network_id} has no subnet to attach to")
        taken = {network["subnets"][0]["gateway"]} | {
            p["ip"] for s in self.project.servers.values() for p in s["private_net"]
            if p["network"] == network_id}
        hosts = ipaddress.IPv4Network(network["subnets"][0]["ip_range"]).hosts()
        ip = next((str(h) for h in hosts if str(h) not in taken), None)
        if ip is None:
            raise FakeApiError(422, "ip_not_available", f"network {network_id} is full")
        server["private_net"].append({"network": network_id, "ip": ip, "alias_ips": [],
                                      "mac_address": f"86:00:00:{server['id'] % 2**24:06x}"})
        network["servers"].append(server["id"])
        return self.project.add_action("attach_to_network", [(server["id"], "server"),
                                                             (network_id, "network")])

    def delete_network(self, network_id: int) -> None:
        """``DELETE /networks/{id}``: its servers are detached."""
        self.network(network_id)
        for server in self.project.servers.values():
            server["private_net"] = [p for p in server["private_net"]
                                     if p["network"] != network_id]
        del self.networks[network_id]

    # -- a deleted server --------------------------------------------------------------

    def release(self, server: dict[str, Any]) -> None:
        """What a deleted server held: its IP (deleted if auto_delete), firewalls, networks."""
        ipv4 = server["public_net"]["ipv4"]
        ip = self.primary_ips.get(ipv4["id"]) if ipv4 else None
        if ip is not None:
            if ip["auto_delete"]:
                del self.primary_ips[ip["id"]]
            else:
                ip["assignee_id"] = None
        for firewall in self.firewalls.values():
            firewall["applied_to"] = [a for a in firewall["applied_to"]
                                      if a["server"]["id"] != server["id"]]
        for network in self.networks.values():
            network["servers"] = [s for s in network["servers"] if s != server["id"]]
