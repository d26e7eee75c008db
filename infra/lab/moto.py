"""moto's servers: a site's S3 store (``moto@<site>``) and the lab's Route 53 (``route53@aws``).

Every site's store holds the app's media bucket and pgBackRest's backups
bucket; pgBackRest reaches it through the site's TLS terminator
(``infra.lab.tls``), the app directly.

Route 53 has a server of its own, so that a drill can silence it without
taking aws's object store along. moto keeps its state in memory, so the lab
creates the buckets and the Route 53 zone each time it starts a server.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import httpx
from botocore.config import Config

from failover.processes import ProcessRecord, spawn
from failover.waiting import wait_for
from infra.lab.layout import BACKUP_BUCKET, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.prefork import Part
from infra.lab.secrets import LabSecrets


def endpoint(layout: LabLayout, part: str) -> str:
    """The URL of a moto part, e.g. ``moto@aws`` or ``route53@aws``."""
    address, port = layout.listener(part)
    return f"http://{address}:{port}"


def server(layout: LabLayout, paths: LabPaths, part: str) -> Part:
    """What a moto part runs: moto's server (``infra.lab.moto_server``, EC2 offerings of the
    lab's region only) where the layout puts it."""
    address, port = layout.listener(part)
    return Part(part, "infra.lab.moto_server",
                ("--region", layout.region, "-H", address, "-p", str(port)), str(paths.log(part)))


def start(layout: LabLayout, paths: LabPaths, part: str) -> ProcessRecord:
    """Start the moto server of a part where the layout puts it."""
    return spawn(part, server(layout, paths, part).argv, log=paths.log(part))


def wait_ready(layout: LabLayout, part: str, timeout: float = 30.0) -> None:
    """Wait until a part's moto server answers HTTP."""
    url = f"{endpoint(layout, part)}/moto-api/"
    wait_for(
        lambda: httpx.get(url, timeout=1.0).status_code < 500,
        timeout=timeout, what=f"{part} to answer",
        retry_on=httpx.TransportError,  # not listening yet; an HTTP answer is an answer
    )


def client(
    layout: LabLayout, secrets: LabSecrets, url: str, service: str,
    timeout: float | None = None,
) -> Any:
    """A boto3 client for a service of the moto server at ``url``, with the lab's keys.

    With a ``timeout``, each call makes one attempt bounded by it (a probe of
    a frozen server must not wait out boto3's minute and its retries).
    """
    config = None if timeout is None else Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1},
    )
    return boto3.client(
        service,  # type: ignore[call-overload]  # boto3's overloads want a literal name
        endpoint_url=url,
        region_name=layout.region,
        aws_access_key_id=secrets.aws_access_key_id,
        aws_secret_access_key=secrets.aws_secret_access_key,
        config=config,
    )


def create_buckets(layout: LabLayout, secrets: LabSecrets, site: str) -> list[str]:
    """Create the site's buckets, the app's media and pgBackRest's backups; their names."""
    s3 = client(layout, secrets, layout.s3_endpoint(site), "s3")
    buckets = [layout.bucket, BACKUP_BUCKET]
    for bucket in buckets:
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": layout.region},
        )
    return buckets


def create_zone(layout: LabLayout, secrets: LabSecrets, url: str, address: str) -> str:
    """Create the lab zone in the Route 53 at ``url``, the app at ``address``; returns its id."""
    route53 = client(layout, secrets, url, "route53")
    zone = route53.create_hosted_zone(Name=layout.zone, CallerReference=str(uuid.uuid4()))
    zone_id: str = zone["HostedZone"]["Id"]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": layout.app_name, "Type": "A", "TTL": layout.ttl,
                "ResourceRecords": [{"Value": address}],
            },
        }]},
    )
    return zone_id


def route53_answer(
    layout: LabLayout, secrets: LabSecrets, timeout: float | None = None
) -> tuple[list[str], int | None]:
    """The A addresses the lab's Route 53 holds for the app's name and their TTL."""
    route53 = client(layout, secrets, layout.route53_endpoint, "route53", timeout)
    zones = route53.list_hosted_zones_by_name(DNSName=layout.zone)["HostedZones"]
    zone = next((z for z in zones if z["Name"] == layout.zone), None)
    if zone is None:
        return [], None
    records = route53.list_resource_record_sets(
        HostedZoneId=zone["Id"], StartRecordName=layout.app_name, StartRecordType="A",
        MaxItems="1",
    )["ResourceRecordSets"]
    for record in records:
        if record["Name"] == layout.app_name and record["Type"] == "A":
            return sorted(r["Value"] for r in record["ResourceRecords"]), record.get("TTL")
    return [], None
