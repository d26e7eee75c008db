"""Addresses as firewall rules take them."""

from __future__ import annotations

import ipaddress


def is_address(text: str) -> bool:
    """Whether ``text`` is one IP address (not a network, not a name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def cidr(address: str) -> str:
    """An address or network as CIDR: a bare address is its own /32 (or /128)."""
    net = ipaddress.ip_network(address, strict=False)
    return str(net) if "/" in address else f"{net.network_address}/{net.max_prefixlen}"
