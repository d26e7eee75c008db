"""A site at Hetzner Cloud: primary IP, firewall, network, server, data volume and bucket.

Everything is named ``failover-<site>`` and labelled ``failover-site=<site>``,
as ``failover rebuild`` names what it makes (``failover.provision.hcloud``),
which looks each up by name before making it. So a spare's stack reserves the
primary IP, firewall and network, and makes no server: a rebuild finds them
and makes the server on them.

The bucket is made through Hetzner's S3 API (``storage.hetzner_s3``):
pulumi-hcloud has no object-storage resource.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_hcloud as hcloud

from infra.components.agent import AgentArgs, SiteAgent
from infra.components.rules import Ingress
from infra.components.settings import HetznerHost, KeyPair, Role
from infra.components.storage import BucketArgs, VersionedBucket, hetzner_s3

# A private network lives in a zone; a server joins it only in one of the zone's locations.
NETWORK_ZONES = {"fsn1": "eu-central", "nbg1": "eu-central", "hel1": "eu-central",
                 "ash": "us-east", "hil": "us-west", "sin": "ap-southeast"}


def _int(output: pulumi.Output[str]) -> pulumi.Output[int]:
    """A Pulumi id as hcloud's arguments take it: Hetzner's ids are integers."""
    return output.apply(int)


@dataclass(frozen=True)
class HetznerSiteArgs:
    """One Hetzner site: its role, its host's settings, its firewall rules, its bucket."""

    site: str
    role: Role  # a spare gets its address, firewall and network, not yet a server
    host: HetznerHost
    rules: Sequence[Ingress]
    bucket: str
    keys: KeyPair  # Hetzner's S3 keys, for the bucket
    agent: AgentArgs
    ssh_public_key: str | None = None  # the operators' key, for root


class HetznerSite(pulumi.ComponentResource):
    """A primary IP, a firewall, a private network, a server running the agent with its
    PostgreSQL data on a volume (and the operators' SSH key when one is given), and a
    versioned bucket in Hetzner's object storage."""

    def __init__(self, name: str, args: HetznerSiteArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("failover:infra:HetznerSite", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        host, resource_name = args.host, f"failover-{args.site}"
        labels = {"failover-site": args.site}
        self.ip = hcloud.PrimaryIp(
            f"{name}-ip", name=resource_name, type="ipv4", location=host.location,
            assignee_type="server", auto_delete=False, labels=labels, opts=child)
        self.firewall = hcloud.Firewall(f"{name}-firewall", name=resource_name, labels=labels,
                                        rules=[_rule(rule) for rule in args.rules], opts=child)
        network = hcloud.Network(f"{name}-network", name=resource_name,
                                 ip_range=host.network_ip_range, labels=labels, opts=child)
        subnet = hcloud.NetworkSubnet(
            f"{name}-subnet", network_id=_int(network.id), type="cloud",
            network_zone=NETWORK_ZONES.get(host.location, "eu-central"),
            ip_range=host.network_ip_range, opts=child)
        self.server: hcloud.Server | None = None
        agent = args.agent
        if args.role != "spare":
            volume = hcloud.Volume(f"{name}-data", name=f"{resource_name}-data",
                                   size=host.volume_gb, location=host.location, format="ext4",
                                   labels=labels, opts=child)
            # Hetzner mounts an automounted volume at /mnt/HC_Volume_<id>.
            agent = dataclasses.replace(agent, data_dir=volume.id.apply(
                lambda id_: f"/mnt/HC_Volume_{id_}/postgresql"))
        self.agent = SiteAgent(f"{name}-agent", agent, opts=child)
        if args.role != "spare":
            # Made with the server only: a spare's host is `failover rebuild`'s.
            key = None if args.ssh_public_key is None else hcloud.SshKey(
                f"{name}-ssh", name=resource_name, public_key=args.ssh_public_key,
                labels=labels, opts=child)
            self.server = hcloud.Server(
                f"{name}-host", name=resource_name, server_type=host.server_type,
                image=host.image, location=host.location, labels=labels,
                user_data=self.agent.user_data, firewall_ids=[_int(self.firewall.id)],
                public_nets=[hcloud.ServerPublicNetArgs(
                    ipv4_enabled=True, ipv4=_int(self.ip.id), ipv6_enabled=False)],
                networks=[hcloud.ServerNetworkArgs(network_id=_int(network.id))],
                ssh_keys=[key.id] if key is not None else None,
                # As at AWS: the database's host is never replaced by a plan.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[subnet], ignore_changes=[
                    "image", "user_data", "ssh_keys"]))
            hcloud.VolumeAttachment(f"{name}-data-host", volume_id=_int(volume.id),
                                    server_id=_int(self.server.id), automount=True, opts=child)
        s3 = hetzner_s3(f"{name}-s3", host.location, args.keys, opts=child)
        self.media = VersionedBucket(f"{name}-media", BucketArgs(
            args.bucket, provider=s3, block_public=False), opts=child)
        self.address: pulumi.Output[str] = self.ip.ip_address
        self.register_outputs({"address": self.address, "bucket": self.media.name})


def _rule(rule: Ingress) -> hcloud.FirewallRuleArgs:
    return hcloud.FirewallRuleArgs(direction="in", protocol="tcp", port=str(rule.port),
                                   source_ips=list(rule.sources), description=rule.description)
