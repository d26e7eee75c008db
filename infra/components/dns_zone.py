"""The app's DNS zone: Route 53's hosted zone and records, and the RFC 2136 server's key.

The records are created pointing at the primary with the TTLs of
``failover.yaml``; from then on they belong to the controller, which moves
them (and lowers their TTL ahead of a planned move). So the stack ignores
later changes to their values and TTLs: an ``up`` must never point users back
at a site the controller has moved away from.

The zone is also published to an RFC 2136 server (BIND, Knot...), so that DNS
does not live only at AWS. That server is not made here; its TSIG key is, as a
Pulumi secret, for the server's operator and for ``failover.yaml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.components.settings import ZoneSettings
from infra.components.storage import ApiUser, ApiUserArgs

TSIG_BYTES = 32  # as tsig-keygen makes an hmac-sha256 key


def record_name(name: str, zone: str) -> str:
    """A record's absolute name: ``app`` in ``example.com.`` is ``app.example.com.``."""
    return zone if name == "@" else f"{name}.{zone}"


def dns_policy(zone_arn: pulumi.Output[str]) -> pulumi.Output[str]:
    """What the controller may do at Route 53: read and change this zone's records."""
    return zone_arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": arn,
         "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets",
                    "route53:GetHostedZone"]},
        {"Effect": "Allow", "Resource": "arn:aws:route53:::change/*",
         "Action": "route53:GetChange"},
        {"Effect": "Allow", "Resource": "*", "Action": "route53:ListHostedZonesByName"},
    ]}))


@dataclass(frozen=True)
class DnsZoneArgs:
    """The zone's settings, and the address its records point at first (the primary's)."""

    zone: ZoneSettings
    address: pulumi.Input[str]


class DnsZone(pulumi.ComponentResource):
    """A Route 53 hosted zone with the records that follow the primary, an IAM user that
    may change them, and the TSIG key of the RFC 2136 server."""

    def __init__(self, name: str, args: DnsZoneArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("failover:infra:DnsZone", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = args.zone
        self.hosted_zone = aws.route53.Zone(
            name, name=zone.zone.rstrip("."), comment="failover: the app's records",
            opts=child)
        for record in zone.records:
            aws.route53.Record(
                f"{name}-{record.name.replace('@', 'apex')}-{record.type.lower()}",
                zone_id=self.hosted_zone.zone_id, name=record_name(record.name, zone.zone),
                type=record.type, ttl=record.ttl, records=[args.address],
                # The controller moves them from now on (see the module's docstring).
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["records", "ttl"]))
        self.dns_user = ApiUser(f"{name}-controller", ApiUserArgs(
            "failover-dns-controller", dns_policy(self.hosted_zone.arn)), opts=child)
        self.tsig_key: pulumi.Output[dict[str, Any]] | None = None
        rfc2136: dict[str, Any] | None = None
        if zone.rfc2136 is not None:
            server = zone.rfc2136
            key = random.RandomBytes(f"{name}-tsig", length=TSIG_BYTES, opts=child)
            self.tsig_key = pulumi.Output.secret(pulumi.Output.all(
                name=server.key_name, algorithm=server.algorithm,
                secret=key.base64))
            rfc2136 = {"server": server.server, "port": server.port,
                       "key_name": server.key_name, "algorithm": server.algorithm}
        self.dns: pulumi.Output[dict[str, Any]] = pulumi.Output.all(
            zone_id=self.hosted_zone.zone_id,
            name_servers=self.hosted_zone.name_servers).apply(lambda made: {
                "zone": zone.zone, "low_ttl": zone.low_ttl,
                "records": [{"name": r.name, "type": r.type, "ttl": r.ttl}
                            for r in zone.records],
                "route53_zone_id": made["zone_id"],
                "name_servers": list(made["name_servers"] or []),
                "rfc2136": rfc2136})
        self.register_outputs({"dns": self.dns})
