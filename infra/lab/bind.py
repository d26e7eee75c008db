"""BIND 9, authoritative for the lab's zone, updated only with the lab's TSIG key."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
from dns.rcode import Rcode

from failover.dns.tsig import TsigKey
from failover.processes import ProcessRecord, spawn
from failover.secretfiles import write_private
from failover.waiting import wait_for
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.system import RunAs


def named_conf(layout: LabLayout, paths: LabPaths, key: TsigKey) -> str:
    """named.conf for the lab: one primary zone, no recursion, TSIG-only updates."""
    d = paths.dns
    zone = layout.zone.rstrip(".")
    return f"""// failover lab: written by `failover lab up`; holds the lab's TSIG key (0600)
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {layout.dns_port} {{ {layout.dns_address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;   // never try to reach the root servers
    allow-transfer {{ none; }};
    notify no;
}};
controls {{ }};
{key.to_bind()}
zone "{zone}" {{
    type primary;
    file "{d}/{zone}.zone";
    update-policy {{ grant {key.name} zonesub ANY; }};
}};
"""


def zone_file(layout: LabLayout, primary_address: str) -> str:
    """The zone as the lab starts it: the app's name points at the primary site."""
    return f"""$ORIGIN {layout.zone}
$TTL 300
@   IN SOA ns1 hostmaster 1 3600 600 86400 {layout.ttl}
@   IN NS  ns1
ns1 IN A   {layout.dns_address}
{layout.app_label} {layout.ttl} IN A {primary_address}
"""


def configure(
    layout: LabLayout, paths: LabPaths, key: TsigKey, primary_address: str, run_as: RunAs
) -> None:
    """Write BIND's configuration and zone, owned by the user named runs as."""
    paths.dns.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(paths.dns / "named.conf", named_conf(layout, paths, key), run_as.owner)
    zone = layout.zone.rstrip(".")
    write_private(paths.dns / f"{zone}.zone", zone_file(layout, primary_address), run_as.owner)
    run_as.chown_tree(paths.dns)  # named writes its journal (.jnl) next to the zone


def start(named: str, paths: LabPaths, run_as: RunAs) -> ProcessRecord:
    """Start named in the foreground (-g logs to stderr); as root it drops to ``bind``."""
    argv = [named, "-g", "-c", str(paths.dns / "named.conf")]
    if run_as.user is not None:
        argv += ["-u", run_as.user]
    return spawn("bind9", argv, log=paths.log("bind9"))


def query(
    layout: LabLayout, name: str, rdtype: str = "A", timeout: float = 1.0
) -> dns.message.Message:
    """Ask the lab's BIND directly (UDP, no recursion)."""
    request = dns.message.make_query(name, rdtype)
    request.flags &= ~dns.flags.RD
    return dns.query.udp(request, layout.dns_address, port=layout.dns_port, timeout=timeout)


def wait_ready(layout: LabLayout, timeout: float = 20.0) -> None:
    """Wait until BIND answers authoritatively for the zone."""
    def answers() -> bool:
        response = query(layout, layout.zone, "SOA")
        return response.rcode() == Rcode.NOERROR and bool(response.answer)

    # A named still starting drops the query (no answer in time) or refuses it.
    wait_for(answers, timeout=timeout, what="BIND to serve the lab zone",
             retry_on=(dns.exception.Timeout, ConnectionRefusedError))


def answer(layout: LabLayout, name: str) -> tuple[list[str], int | None]:
    """The A addresses BIND gives for ``name`` and their TTL."""
    response = query(layout, name, "A")
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return sorted(r.address for r in rrset), rrset.ttl
    return [], None
