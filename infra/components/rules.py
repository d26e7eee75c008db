"""Who may reach a site's host, port by port: the one place the stacks' firewalls come from.

The app's port is open to everyone. PostgreSQL's is open to the other sites
(replication) and the controller (the engine's probes and moves), each as a
single address: never to a network, never to the world. The agent answers the
sites, the controller and the operators' networks; SSH only the operators'.
AWS's security group and Hetzner's firewall are both written from these rules,
as ``failover rebuild`` writes a spare's firewall from the same split
(``failover.provision.hcloud.firewall_rules``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from failover.provision.network import cidr
from infra.components.settings import Access, Ports

WORLD = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class Ingress:
    """TCP traffic into a host on one port, from these CIDRs."""

    port: int
    sources: tuple[str, ...]
    description: str


def ingress_rules(ports: Ports, access: Access) -> list[Ingress]:
    """The rules of a site's host; a private port nobody is named for stays closed."""
    peers = _cidrs(access.peers.values())
    controller = _cidrs(access.controller)
    admin = _cidrs(access.admin)
    rules = [
        Ingress(ports.app, WORLD, "the app, from anywhere"),
        Ingress(ports.database, _union(peers, controller),
                "PostgreSQL: replication between the sites, and the controller"),
        Ingress(ports.agent, _union(peers, controller, admin),
                "the site agent: the sites, the controller, the operators"),
        Ingress(ports.ssh, admin, "SSH: the operators"),
    ]
    return [rule for rule in rules if rule.sources]


def _cidrs(addresses: Iterable[str]) -> tuple[str, ...]:
    """Addresses as CIDRs, a bare address as its own /32 (or /128)."""
    return tuple(cidr(a) for a in addresses)


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """The CIDRs of every group, once each, sorted (a stable plan: no diff from order)."""
    return tuple(sorted({c for group in groups for c in group}))
