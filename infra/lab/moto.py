"""moto's server on a site's address: S3 for media, and at aws also Route 53 and EC2.

moto keeps its state in memory, so the lab creates the buckets and the
Route 53 zone each time it starts the servers.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import boto3
import httpx

from failover.waiting import wait_for
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.processes import ProcessRecord, spawn
from infra.lab.secrets import LabSecrets


def start(layout: LabLayout, paths: LabPaths, site: str) -> ProcessRecord:
    """Start a moto server on the site's address."""
    argv = [
        sys.executable, "-m", "moto.server",
        "-H", layout.address(site), "-p", str(layout.moto_port),
    ]
    return spawn(f"moto@{site}", argv, log=paths.log(f"moto@{site}"))


def wait_ready(layout: LabLayout, site: str, timeout: float = 30.0) -> None:
    """Wait until the server answers HTTP."""
    url = f"{layout.s3_endpoint(site)}/moto-api/"
    wait_for(
        lambda: httpx.get(url, timeout=1.0).status_code < 500,
        timeout=timeout, what=f"moto@{site} to answer",
    )


def client(layout: LabLayout, secrets: LabSecrets, site: str, service: str) -> Any:
    """A boto3 client for one of the site's moto services, with the lab's keys."""
    return boto3.client(
        service,  # type: ignore[call-overload]  # boto3's overloads want a literal name
        endpoint_url=layout.s3_endpoint(site),
        region_name=layout.region,
        aws_access_key_id=secrets.aws_access_key_id,
        aws_secret_access_key=secrets.aws_secret_access_key,
    )


def create_bucket(layout: LabLayout, secrets: LabSecrets, site: str) -> None:
    """Create the site's media bucket."""
    client(layout, secrets, site, "s3").create_bucket(
        Bucket=layout.bucket,
        CreateBucketConfiguration={"LocationConstraint": layout.region},
    )


def create_zone(layout: LabLayout, secrets: LabSecrets, site: str, address: str) -> str:
    """Create the lab zone in Route 53 with the app's record; returns the zone id."""
    route53 = client(layout, secrets, site, "route53")
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
    layout: LabLayout, secrets: LabSecrets, site: str
) -> tuple[list[str], int | None]:
    """The A addresses Route 53 holds for the app's name and their TTL."""
    route53 = client(layout, secrets, site, "route53")
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
