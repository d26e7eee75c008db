"""DNS by hand, one way per kind of provider: how to publish the records, and how to look.

As everything else that depends on a provider's kind, found by its ``kind``
tag (``KINDS``): RFC 2136 servers take ``nsupdate`` signed with the TSIG key
file (``-k``: the secret stays in the file, off every command line), Route 53
takes ``aws route53 change-resource-record-sets`` with a JSON change batch.
A kind without an entry is named, not guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from failover.dns.records import Record
from failover.dns.rfc2136 import Rfc2136Settings
from failover.dns.route53 import Route53Settings
from failover.runbooks.model import Block, Check
from failover.runbooks.shell import SCRATCH, Shell, aws_cli


def _rfc2136_publish(shell: Shell, name: str, s: Rfc2136Settings, records: Sequence[Record],
                     label: str) -> Block:
    lines = [f"server {s.server} {s.port}", f"zone {s.zone}"]
    for r in records:
        lines.append(f"update delete {r.name} {r.rtype}")
        lines += [f"update add {r.name} {r.ttl} {r.rtype} {v}" for v in r.values]
    lines.append("send")
    code = (f"nsupdate -t {s.timeout:g} -k {shell.shown(s.tsig_key_file)} <<'EOF'\n"
            + "\n".join(lines) + "\nEOF")
    return Block(code, f"{name} (RFC 2136 at {s.server}:{s.port}, signed with the TSIG key "
                 "file):")


def _rfc2136_check(shell: Shell, name: str, s: Rfc2136Settings,
                   records: Sequence[Record]) -> list[Check]:
    return [Check(f"dig @{s.server} -p {s.port} +norecurse +noall +answer {r.name} {r.rtype}",
                  " and ".join(f"`{r.name} {r.ttl} IN {r.rtype} {v}`" for v in r.values)
                  + f" ({name})") for r in records]


def _zone_id(s: Route53Settings, aws: str) -> str:
    if s.hosted_zone_id:
        return f"ZONE_ID={s.hosted_zone_id}"
    return (f"ZONE_ID=$({aws} route53 list-hosted-zones-by-name --dns-name {s.zone} "
            "--max-items 1 --query 'HostedZones[0].Id' --output text)")


def _aws(shell: Shell, s: Route53Settings) -> str:
    return aws_cli(s.region, s.endpoint_url, shell.path(s.credentials_file))


def _route53_publish(shell: Shell, name: str, s: Route53Settings, records: Sequence[Record],
                     label: str) -> Block:
    batch = {"Comment": f"failover runbook: {label}", "Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": r.name, "Type": r.rtype, "TTL": r.ttl,
            "ResourceRecords": [{"Value": v} for v in r.values]}} for r in records]}
    path = f"{SCRATCH}/failover-{name}-{label.replace(' ', '-')}.json"
    aws = _aws(shell, s)
    code = "\n".join([
        f'cat > "{path}" <<\'EOF\'', json.dumps(batch, indent=2), "EOF", _zone_id(s, aws),
        f'{aws} route53 change-resource-record-sets --hosted-zone-id "$ZONE_ID" '
        f'--change-batch "file://{path}"'])
    where = f" at {s.endpoint_url}" if s.endpoint_url else ""
    return Block(code, f"{name} (Route 53{where}: the change batch, then the call):")


def _route53_check(shell: Shell, name: str, s: Route53Settings,
                   records: Sequence[Record]) -> list[Check]:
    aws = _aws(shell, s)
    out = []
    for r in records:
        query = (f"ResourceRecordSets[?Name == '{r.name}' && Type == '{r.rtype}']"
                 ".[Name, Type, TTL, join(',', ResourceRecords[].Value)]")
        out.append(Check(
            f'{_zone_id(s, aws)}\n{aws} route53 list-resource-record-sets --hosted-zone-id '
            f'"$ZONE_ID" --query "{query}" --output text',
            f"`{r.name} {r.rtype} {r.ttl} {','.join(r.values)}` ({name})"))
    return out


@dataclass(frozen=True)
class DnsCommands:
    """How one kind of provider is changed and read by hand."""

    publish: Callable[[Shell, str, Any, Sequence[Record], str], Block]
    check: Callable[[Shell, str, Any, Sequence[Record]], list[Check]]


KINDS: dict[str, DnsCommands] = {
    "rfc2136": DnsCommands(_rfc2136_publish, _rfc2136_check),
    "route53": DnsCommands(_route53_publish, _route53_check),
}


def _unknown(name: str, kind: str) -> str:
    return (f"# {name}: no manual command is known for DNS providers of kind {kind}; "
            "use its console or API")


def publish(shell: Shell, records: Sequence[Record], label: str) -> list[Block]:
    """One block per DNS provider that puts ``records`` in place there."""
    out = []
    for name, settings in shell.config.dns_providers.items():
        kind = KINDS.get(settings.kind)
        out.append(kind.publish(shell, name, settings, records, label) if kind
                   else Block(_unknown(name, settings.kind)))
    return out


def look(shell: Shell, records: Sequence[Record], only: str | None = None) -> list[Check]:
    """What every DNS provider (or ``only`` that one) answers for ``records``, and should."""
    out = []
    for name, settings in shell.config.dns_providers.items():
        if only is not None and name != only:
            continue
        kind = KINDS.get(settings.kind)
        out += (kind.check(shell, name, settings, records) if kind
                else [Check(_unknown(name, settings.kind), "the records, in its console")])
    return out
