"""DNS providers wired to the session's lab, and ways to change records behind their backs.

The session lab is shared: other tests expect ``app.<zone>`` to point at the
aws site, so these tests only ever touch fresh names (``t-<uuid8>.<zone>``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from failover.dns.records import Record
from failover.dns.rfc2136 import Rfc2136Provider, Rfc2136Settings
from failover.dns.route53 import Route53Provider, Route53Settings
from failover.dns.tsig import TsigKey
from tests.conftest import RunningLab

Writer = Callable[[Record], None]


def bind9_settings(lab: RunningLab, **overrides: Any) -> Rfc2136Settings:
    """Settings for the lab's BIND, with the lab's TSIG key file."""
    fields: dict[str, Any] = {
        "kind": "rfc2136", "server": lab.layout.dns_address, "port": lab.layout.dns_port,
        "zone": lab.layout.zone, "tsig_key_file": lab.lab.paths.secrets / "tsig.key",
        "timeout": 3.0,
    }
    return Rfc2136Settings(**{**fields, **overrides})


def route53_settings(lab: RunningLab, **overrides: Any) -> Route53Settings:
    """Settings for the lab's Route 53 (route53@aws, a moto server), with the lab's keys."""
    fields: dict[str, Any] = {
        "kind": "route53", "zone": lab.layout.zone,
        "endpoint_url": lab.layout.route53_endpoint, "region": lab.layout.region,
        "credentials_file": lab.lab.paths.secrets / "aws-credentials", "timeout": 5.0,
    }
    return Route53Settings(**{**fields, **overrides})


@pytest.fixture
def bind9(lab: RunningLab) -> Rfc2136Provider:
    """The lab's BIND as an RFC 2136 provider named ``bind9``."""
    return Rfc2136Provider("bind9", bind9_settings(lab))


@pytest.fixture
def route53(lab: RunningLab) -> Route53Provider:
    """The lab's Route 53 as a provider named ``route53``."""
    return Route53Provider("route53", route53_settings(lab))


@pytest.fixture
def fresh_name(lab: RunningLab) -> str:
    """A name in the lab zone that no other test uses."""
    return f"t-{uuid.uuid4().hex[:8]}.{lab.layout.zone}"


@pytest.fixture
def other_writer_bind(lab: RunningLab) -> Writer:
    """Set a record at BIND as someone else would: a signed update, no prerequisites."""
    def write(record: Record) -> None:
        key = lab.secrets.tsig
        update = dns.update.UpdateMessage(
            lab.layout.zone, keyring=dns.tsig.Key(key.name, key.secret, key.algorithm)
        )
        update.replace(record.name, record.ttl, record.rtype, *record.values)
        response = dns.query.tcp(
            update, lab.layout.dns_address, port=lab.layout.dns_port, timeout=3
        )
        assert response.rcode() == dns.rcode.NOERROR

    return write


@pytest.fixture
def other_writer_route53(lab: RunningLab, route53: Route53Provider) -> Writer:
    """Set a record at Route 53 as someone else would: an UPSERT, no prerequisites."""
    def write(record: Record) -> None:
        assert record.rtype == "A"
        client = boto3.client(
            "route53", endpoint_url=lab.layout.route53_endpoint,
            region_name=lab.layout.region,
            aws_access_key_id=lab.secrets.aws_access_key_id,
            aws_secret_access_key=lab.secrets.aws_secret_access_key,
        )
        client.change_resource_record_sets(
            HostedZoneId=route53.zone_id(),
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": record.name, "Type": "A", "TTL": record.ttl,
                "ResourceRecords": [{"Value": v} for v in record.values],
            }}]},
        )

    return write


@pytest.fixture
def wrong_tsig_key_file(lab: RunningLab, tmp_path: Path) -> Path:
    """A key file with the lab key's name and algorithm but another secret."""
    forged = TsigKey.generate(lab.secrets.tsig.name, lab.secrets.tsig.algorithm)
    path = tmp_path / "wrong-tsig.key"
    forged.save(path)
    return path
