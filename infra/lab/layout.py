"""Where each part of the lab listens: addresses, ports, names.

Sites sit on their own loopback addresses (``<subnet>.10.1``, ``.20.1``,
``.30.1``) so that each can use the same well-known ports. BIND must listen
on an address that an interface has, so DNS is on 127.0.0.1 with its own
port. A second lab (the tests') picks another subnet and DNS port. The
controller (``failover watch``) is no part of the lab, but the lab's
configuration says where it listens (``<subnet>.0.1``) and from which
addresses its two vantage points probe (``<subnet>.40.1``, ``.41.1``).

Every site has an object store (``moto@<site>``, plain HTTP) and, in front
of it, a TLS terminator (``tls@<site>``, ``s3_tls_port``) for pgBackRest,
whose S3 client speaks only TLS. aws and hetzner also run a database, its
app and an agent; the spare site has only its store: the backups kept off
both providers, and the object store of a site rebuilt there. And its
provider's API (``hcloud@spare``, a fake with no server yet): a rebuild makes
the site's server there, which starts the site's agent, database and app.
Every site also runs a member of the etcd cluster (``etcd@<site>``) on which
the controllers elect their leader.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from failover.exceptions import ConfigError

SITE_OCTETS = {"aws": 10, "hetzner": 20, "spare": 30}
PRIMARY_SITE = "aws"
STANDBY_SITE = "hetzner"
SPARE_SITE = "spare"  # the target of a rebuild: empty but for its object store
# AWS's APIs live at the aws site (a blackout of aws takes Route 53 with it),
# in a moto server of their own, so a drill can silence Route 53 alone.
ROUTE53_SITE = PRIMARY_SITE
ROUTE53_PART = f"route53@{ROUTE53_SITE}"
# Each site's provider API: EC2 (moto, IAM enforced, a server of its own) for
# aws, a fake of the Hetzner Cloud API for hetzner (no real one runs locally).
EC2_SITE = PRIMARY_SITE
EC2_PART = f"ec2@{EC2_SITE}"
HCLOUD_SITE = STANDBY_SITE
HCLOUD_PART = f"hcloud@{HCLOUD_SITE}"
# The spare site's provider: a second fake Hetzner project, with no server, whose
# create-server boots an agent at the spare site's address (a rebuild's target).
HCLOUD_SPARE_PART = f"hcloud@{SPARE_SITE}"
# The app's database and its owner, at every site that has a database.
APP_DATABASE = "social"
APP_USER = "app"
# pgBackRest's bucket at every site (beside the app's media bucket, ``LabLayout.bucket``).
BACKUP_BUCKET = "backups"
# The sites that run a database, its app and an agent; the others have an object store only.
DATABASE_SITES = (PRIMARY_SITE, STANDBY_SITE)
# The controller's probe locations, each leaving from an address of its own.
VANTAGE_OCTETS = {"vantage-a": 40, "vantage-b": 41}


@dataclass(frozen=True)
class LabLayout:
    """The lab's addresses, ports and names; saved in the state dir at ``lab up``."""

    subnet: str = "127.0"
    dns_address: str = "127.0.0.1"
    dns_port: int = 5300
    postgres_port: int = 5432
    app_port: int = 8080
    moto_port: int = 5000
    route53_port: int = 5001
    hcloud_port: int = 5002
    ec2_port: int = 5003
    s3_tls_port: int = 5443  # tls@<site>: HTTPS in front of the site's moto (pgBackRest)
    agent_port: int = 7070
    etcd_port: int = 2379  # etcd@<site>: the member's clients (the controllers)
    etcd_peer_port: int = 2380  # and its peers, the other sites' members
    watch_port: int = 8470
    zone: str = "lab.failover.test."
    app_label: str = "app"
    ttl: int = 5
    bucket: str = "media"
    region: str = "eu-central-1"
    sites: tuple[str, ...] = field(default=tuple(SITE_OCTETS))
    # The agents hold the primary's lease in etcd (their configs' cluster section) instead of
    # the controller renewing it: losing the leading controller fences no primary.
    agent_leases: bool = True

    def __post_init__(self) -> None:
        problems = []
        parts = self.subnet.split(".")
        if len(parts) != 2 or parts[0] != "127" or not all(p.isdigit() for p in parts):
            problems.append(f"subnet {self.subnet!r} must look like 127.N (loopback only)")
        elif not 0 <= int(parts[1]) <= 255:
            problems.append(f"subnet {self.subnet!r}: N must be 0-255")
        if not ipaddress.ip_address(self.dns_address).is_loopback:
            problems.append(f"DNS address {self.dns_address} is not a loopback address")
        site_ports = ("postgres_port", "app_port", "moto_port", "route53_port",
                      "hcloud_port", "ec2_port", "agent_port", "s3_tls_port", "etcd_port",
                      "etcd_peer_port")
        for name in ("dns_port", "watch_port", *site_ports):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                problems.append(f"{name} {port} is not a TCP/UDP port")
        taken: dict[int, str] = {}
        for name in site_ports:  # they share a site's address
            port = getattr(self, name)
            if port in taken:
                problems.append(f"{name} {port} is {taken[port]} too: a site's ports must differ")
            taken.setdefault(port, name)
        if not self.zone.endswith("."):
            problems.append(f"zone {self.zone!r} must be absolute (end with a dot)")
        if problems:
            raise ConfigError("lab layout: " + "; ".join(problems))

    def address(self, site: str) -> str:
        """The loopback address of a site."""
        return f"{self.subnet}.{SITE_OCTETS[site]}.1"

    @property
    def app_name(self) -> str:
        """The fully qualified name users resolve to reach the app."""
        return f"{self.app_label}.{self.zone}"

    def app_url(self, site: str) -> str:
        """The base URL of a site's app."""
        return f"http://{self.address(site)}:{self.app_port}"

    def s3_endpoint(self, site: str) -> str:
        """The S3 endpoint of a site's moto server."""
        return f"http://{self.address(site)}:{self.moto_port}"

    def s3_tls_endpoint(self, site: str) -> str:
        """The HTTPS endpoint of a site's object store (its TLS terminator, for pgBackRest)."""
        return f"https://{self.address(site)}:{self.s3_tls_port}"

    @property
    def route53_endpoint(self) -> str:
        """The Route 53 endpoint: a moto server of its own at the aws site."""
        return f"http://{self.address(ROUTE53_SITE)}:{self.route53_port}"

    @property
    def ec2_endpoint(self) -> str:
        """The EC2 (and IAM) endpoint of the aws site: moto with IAM enforced."""
        return f"http://{self.address(EC2_SITE)}:{self.ec2_port}"

    @property
    def hcloud_endpoint(self) -> str:
        """The base URL of the hetzner site's fake Hetzner Cloud API (as hcloud's api_endpoint)."""
        return f"http://{self.address(HCLOUD_SITE)}:{self.hcloud_port}/v1"

    @property
    def hcloud_spare_endpoint(self) -> str:
        """The base URL of the spare site's fake Hetzner Cloud API (as hcloud's api_endpoint)."""
        return f"http://{self.address(SPARE_SITE)}:{self.hcloud_port}/v1"

    def etcd_endpoint(self, site: str) -> str:
        """The client URL of a site's etcd member."""
        return f"http://{self.address(site)}:{self.etcd_port}"

    def etcd_peer_url(self, site: str) -> str:
        """The URL a site's etcd member is reached at by its peers."""
        return f"http://{self.address(site)}:{self.etcd_peer_port}"

    @property
    def watch_address(self) -> str:
        """Where the controller listens: ``<subnet>.0.1`` (127.0.0.1 for the default lab)."""
        return f"{self.subnet}.0.1"

    def vantage_address(self, vantage: str) -> str:
        """The source address of one of the controller's vantage points."""
        return f"{self.subnet}.{VANTAGE_OCTETS[vantage]}.1"

    def listeners(self) -> list[tuple[str, str, int]]:
        """Every (part, address, port) the running lab listens on."""
        out = [("bind9", self.dns_address, self.dns_port)]
        for site in self.sites:
            address = self.address(site)
            if site in DATABASE_SITES:
                out += [
                    (f"agent@{site}", address, self.agent_port),
                    (f"postgres@{site}", address, self.postgres_port),
                    (f"app@{site}", address, self.app_port),
                ]
            out += [  # every site has an object store, and TLS in front of it
                (f"moto@{site}", address, self.moto_port),
                (f"tls@{site}", address, self.s3_tls_port),
            ]
            if site == ROUTE53_SITE:
                out.append((ROUTE53_PART, address, self.route53_port))
            if site == EC2_SITE:
                out.append((EC2_PART, address, self.ec2_port))
            if site == HCLOUD_SITE:
                out.append((HCLOUD_PART, address, self.hcloud_port))
            if site == SPARE_SITE:
                out.append((HCLOUD_SPARE_PART, address, self.hcloud_port))
            # Every site has a member of the etcd cluster: its clients' port, then its peers'.
            out += [(f"etcd@{site}", address, self.etcd_port),
                    (f"etcd@{site}", address, self.etcd_peer_port)]
        return out

    def listener(self, part: str) -> tuple[str, int]:
        """The (address, port) one part listens on, e.g. ``moto@aws`` (etcd: its clients')."""
        for name, address, port in self.listeners():
            if name == part:
                return address, port
        raise KeyError(f"the lab has no part named {part!r}")

    def where(self, part: str) -> tuple[str, int]:
        """Where a part listens: ``listener``, or for an agent, database or app that a
        rebuild brought up at a site without one (spare's), that site's usual place."""
        kind, _, site = part.partition("@")
        ports = {"agent": self.agent_port, "postgres": self.postgres_port, "app": self.app_port}
        try:
            return self.listener(part)
        except KeyError:
            if kind not in ports or site not in SITE_OCTETS:
                raise
        return self.address(site), ports[kind]

    def to_dict(self) -> dict[str, Any]:
        """The layout as JSON-ready data."""
        data = asdict(self)
        data["sites"] = list(self.sites)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabLayout:
        """The layout saved by ``to_dict``."""
        data = dict(data)
        data["sites"] = tuple(data.get("sites", SITE_OCTETS))
        return cls(**data)
