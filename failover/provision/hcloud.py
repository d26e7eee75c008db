"""A site's host at Hetzner Cloud, made with the real ``hcloud`` client: idempotent by name.

Every resource is named ``failover-<site>`` and labelled ``failover-site=<site>``;
each is looked up by name before it is made, so a rebuild that stopped half
way finds what it made and goes on. The order follows what depends on what:
the primary IP (the site's address, which DNS and the other sites' firewalls
name), the firewall, the private network, then the server with the
cloud-init user-data that installs and starts the site agent.

The firewall opens the app's port to everyone, and the database and agent
ports only to the addresses given (the other sites, the controller): never
PostgreSQL to 0.0.0.0/0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hcloud import APIException, Client
from hcloud.firewalls.domain import FirewallRule
from hcloud.images.domain import Image
from hcloud.locations.domain import Location
from hcloud.networks.domain import NetworkSubnet
from hcloud.server_types.domain import ServerType
from hcloud.servers.domain import ServerCreatePublicNetwork

from failover.exceptions import ProviderError
from failover.provision.config import HcloudProvisionConfig
from failover.provision.network import cidr
from failover.secretfiles import read_private

PROVIDER = "hcloud"



def firewall_rules(app_port: int, private_ports: Sequence[int],
                   sources: Sequence[str]) -> list[FirewallRule]:
    """The app's port from anywhere; the private ports only from ``sources``."""
    rules = [FirewallRule(direction="in", protocol="tcp", port=str(app_port),
                          source_ips=["0.0.0.0/0", "::/0"], description="the app")]
    cidrs = sorted({cidr(s) for s in sources})
    if cidrs:
        rules += [FirewallRule(direction="in", protocol="tcp", port=str(port),
                               source_ips=cidrs, description="sites and controller only")
                  for port in private_ports]
    return rules


class HcloudHost:
    """Makes (or finds) the resources of one site's host in a Hetzner Cloud project."""

    def __init__(self, config: HcloudProvisionConfig, site: str) -> None:
        self.config = config
        self.site = site
        self.name = f"failover-{site}"
        self.labels = {"failover-site": site}
        token = read_private(config.token_file, "Hetzner Cloud token").strip()
        self.client = Client(token=token, api_endpoint=config.endpoint,
                             timeout=config.timeout, poll_interval=0.5)

    def _call(self, doing: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except APIException as exc:
            raise ProviderError(f"hcloud {doing}: {exc.code}: {exc.message}",
                                provider=PROVIDER, code=str(exc.code)) from None
        except OSError as exc:  # requests' errors are OSErrors: refused, timed out
            raise ProviderError(f"hcloud {doing}: no answer from {self.config.endpoint} "
                                f"({type(exc).__name__})", provider=PROVIDER,
                                code="UNREACHABLE") from None

    def ensure(self, user_data: str, *, app_port: int, private_ports: Sequence[int],
               sources: Sequence[str], say: Callable[[str], None]) -> dict[str, Any]:
        """Make what is missing; the server's id, its address and what was made now."""
        made: list[str] = []
        c, location = self.client, Location(name=self.config.location)
        ip = self._call("get primary IP", lambda: c.primary_ips.get_by_name(self.name))
        if ip is None:
            say(f"creating primary IP {self.name}")
            ip = self._call("create primary IP", lambda: c.primary_ips.create(
                type="ipv4", name=self.name, location=location, assignee_type="server",
                labels=self.labels).primary_ip)
            made.append("primary_ip")
        firewall = self._call("get firewall", lambda: c.firewalls.get_by_name(self.name))
        if firewall is None:
            say(f"creating firewall {self.name}")
            rules = firewall_rules(app_port, private_ports, sources)
            firewall = self._call("create firewall", lambda: c.firewalls.create(
                name=self.name, rules=rules, labels=self.labels).firewall)  # type: ignore[arg-type]
            made.append("firewall")
        network = self._call("get network", lambda: c.networks.get_by_name(self.name))
        if network is None:
            say(f"creating network {self.name}")
            ip_range = self.config.network_ip_range
            network = self._call("create network", lambda: c.networks.create(
                name=self.name, ip_range=ip_range, labels=self.labels,
                subnets=[NetworkSubnet(ip_range=ip_range, network_zone="eu-central",
                                       type="cloud")]))
            made.append("network")
        server = self._call("get server", lambda: c.servers.get_by_name(self.name))
        if server is None:
            say(f"creating server {self.name} ({self.config.server_type}, "
                f"{self.config.image}, {self.config.location})")
            server = self._call("create server", lambda: c.servers.create(
                name=self.name, server_type=ServerType(name=self.config.server_type),
                image=Image(name=self.config.image), location=location,
                user_data=user_data, labels=self.labels, firewalls=[firewall],
                networks=[network],
                public_net=ServerCreatePublicNetwork(ipv4=ip, enable_ipv6=False)).server)
            made.append("server")
        address = ip.ip
        return {"server_id": server.id, "server": self.name, "address": address,
                "primary_ip_id": ip.id, "firewall_id": firewall.id, "network_id": network.id,
                "made": made}

    def destroy_server(self) -> bool:
        """Delete the server and wait for it to go (the primary IP stays: the site's address)."""
        server = self._call("get server", lambda: self.client.servers.get_by_name(self.name))
        if server is None:
            return False
        self._call("delete server", lambda: server.delete().wait_until_finished())
        return True
