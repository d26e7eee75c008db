"""Amazon Route 53 (or moto's Route 53 in the lab), through boto3.

A plan becomes one change batch, which Route 53 applies all or nothing. Its
prerequisites are Route 53's own rules: a DELETE must name the record set
exactly as it is now, and a CREATE fails when the set already exists. An
update is ``DELETE existing`` followed by ``UPSERT desired`` in the same
batch: the DELETE is the prerequisite. AWS documents DELETE + CREATE for
this; UPSERT re-adds the set just the same once the DELETE has removed it,
and we use it because moto checks a CREATE against its journal of past
changes and refuses to re-create a value the zone once had, which breaks
TTL restores and fail-backs in the lab. (DELETE + UPSERT has been tried
against moto only, not yet against AWS itself.)

moto enforces neither rule faithfully, so before sending a batch we also
re-read the record sets it touches and refuse when any changed since the
plan was made. On AWS that check only gives a clearer message; the batch's
own rules still close the race between the read and the write.

Retry policy: botocore retries a failed call once more (``max_attempts=2``)
with its own backoff. A change batch cannot apply twice that way: once it
has applied, its DELETE or CREATE no longer holds and a repeat is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import botocore.exceptions
import dns.exception
import dns.resolver
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, field_validator

from failover.aws import load_credentials
from failover.awssession import session
from failover.dns import authoritative
from failover.dns.base import DnsProvider, Reader, log_event
from failover.dns.exceptions import PrerequisiteFailed, ProviderUnreachable
from failover.dns.records import Create, Delete, Plan, Record, RecordKey, Update
from failover.exceptions import ConfigError, ProviderError
from failover.waiting import WaitTimeout, wait_for

if TYPE_CHECKING:
    from mypy_boto3_route53 import Route53Client
    from mypy_boto3_route53.type_defs import (
        ChangeBatchTypeDef,
        ChangeTypeDef,
        ResourceRecordSetTypeDef,
    )

# Route 53's words for "the batch's own prerequisites did not hold".
_PREREQUISITE_MESSAGES = ("Tried to create", "Tried to delete", "but it was not found",
                          "do not match the current values", "but it already exists")
_CREDENTIAL_CODES = {"AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch",
                     "UnrecognizedClientException", "ExpiredToken", "AuthFailure"}

_T = TypeVar("_T")


class Route53Settings(BaseModel):
    """A Route 53 hosted zone in the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["route53"]
    zone: str
    endpoint_url: str | None = Field(
        default=None, description="another endpoint (moto in the lab)",
    )
    region: str = "us-east-1"
    credentials_file: Path | None = Field(
        default=None, description="AWS shared-credentials file, mode 0600; default: boto3's chain",
    )
    hosted_zone_id: str | None = Field(
        default=None, description="looked up by zone name when absent",
    )
    timeout: float = Field(
        default=10.0, gt=0, le=120, description="seconds to connect, and to read",
    )
    verify_via: Literal["api", "nameservers"] = "api"
    sync_timeout: float = Field(
        default=120.0, gt=0, description="seconds to wait for a change to reach every name server",
    )

    @field_validator("zone")
    @classmethod
    def _absolute_zone(cls, value: str) -> str:
        value = value.strip().lower()
        return value if value.endswith(".") else value + "."


def _unescape(name: str) -> str:
    # Route 53 returns some characters as octal escapes, e.g. "\052" for "*".
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m[1], 8)), name).lower()


def _change(action: Literal["CREATE", "DELETE", "UPSERT"], record: Record) -> ChangeTypeDef:
    record_set: ResourceRecordSetTypeDef = {
        "Name": record.name,
        "Type": record.rtype,  # type: ignore[typeddict-item]  # a str checked against SUPPORTS
        "TTL": record.ttl,
        "ResourceRecords": [{"Value": v} for v in record.values],
    }
    return {"Action": action, "ResourceRecordSet": record_set}


def translate(
    exc: Exception, provider: str, doing: str, endpoint: str, timeout: float
) -> Exception:
    """A boto3/botocore error as the product's error, with AWS's code and request id."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", str(exc))
        request_id = exc.response.get("ResponseMetadata", {}).get("RequestId")
        if code == "InvalidChangeBatch" and any(m in message for m in _PREREQUISITE_MESSAGES):
            return PrerequisiteFailed(
                f"{provider} refused the change batch: a record changed since the plan was "
                f"made ({message}); nothing was changed. Plan again and review",
                provider=provider, code=code, request_id=request_id,
            )
        hint = "; are the AWS credentials valid?" if code in _CREDENTIAL_CODES else ""
        return ProviderError(
            f"{provider}: Route 53 refused to {doing}: {code}: {message}{hint}",
            provider=provider, code=code, request_id=request_id,
        )
    if isinstance(exc, (botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError)):
        return ProviderUnreachable(
            f"no answer from {provider} (Route 53 at {endpoint}) within {timeout:g}s "
            f"while trying to {doing}", provider=provider, code="TIMEOUT",
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return ProviderUnreachable(  # botocore's own message repeats the whole URL
            f"cannot connect to {provider} (Route 53 at {endpoint}) to {doing}",
            provider=provider, code="UNREACHABLE",
        )
    if isinstance(exc, (botocore.exceptions.ConnectionError,
                        botocore.exceptions.HTTPClientError)):
        return ProviderUnreachable(
            f"cannot reach {provider} (Route 53 at {endpoint}) to {doing}: {exc}",
            provider=provider, code="UNREACHABLE",
        )
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError(
            f"{provider}: no AWS credentials found; set credentials_file in the config"
        )
    return ProviderError(f"{provider}: cannot {doing}: {exc}", provider=provider)


class Route53Provider(DnsProvider):
    """A public hosted zone in Route 53."""

    KIND = "route53"
    SUPPORTS = frozenset({"A", "AAAA", "CNAME", "TXT"})

    def __init__(
        self, name: str, settings: Route53Settings, *, client: Route53Client | None = None
    ) -> None:
        super().__init__(name, settings.zone)
        self.settings = settings
        self._zone_id = settings.hosted_zone_id
        self._client = client or self._make_client()

    def _make_client(self) -> Route53Client:
        s = self.settings
        creds = load_credentials(s.credentials_file) if s.credentials_file else {}
        config = Config(
            connect_timeout=s.timeout, read_timeout=s.timeout, retries={"max_attempts": 2},
        )
        return session(  # botocore's data read once per process (failover.awssession says why)
            aws_access_key_id=creds.get("aws_access_key_id"),
            aws_secret_access_key=creds.get("aws_secret_access_key"),
            aws_session_token=creds.get("aws_session_token"),
            region_name=s.region,
        ).client("route53", endpoint_url=s.endpoint_url, config=config)

    @property
    def endpoint(self) -> str:
        """Where the API calls go."""
        return self.settings.endpoint_url or "route53.amazonaws.com"

    @contextmanager
    def _calling(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise translate(exc, self.name, doing, self.endpoint, self.settings.timeout) from exc

    def _in_zone(self, doing: str, call: Callable[[str], _T]) -> _T:
        """``call(zone_id)``; a looked-up id that no longer exists is looked up once more.

        A zone deleted and created again (a rebuilt account, the lab after a
        drill) has a new id: a long-lived provider must not keep the old one.
        """
        zone = self.zone_id()
        try:
            with self._calling(doing):
                return call(zone)
        except ProviderError as exc:
            if exc.code != "NoSuchHostedZone" or self.settings.hosted_zone_id is not None:
                raise
        self._zone_id = None
        zone = self.zone_id()
        with self._calling(doing):
            return call(zone)

    def zone_id(self) -> str:
        """The hosted zone's id: configured, or looked up by name once."""
        if self._zone_id is None:
            with self._calling(f"look up the hosted zone {self.zone}"):
                zones = self._client.list_hosted_zones_by_name(
                    DNSName=self.zone, MaxItems="10")["HostedZones"]
            found = [
                z["Id"] for z in zones
                if z["Name"].lower() == self.zone and not z.get("Config", {}).get("PrivateZone")
            ]
            if len(found) != 1:
                raise ConfigError(
                    f"DNS provider {self.name}: {'no' if not found else len(found)} public hosted "
                    f"zone(s) named {self.zone} at {self.endpoint}; "
                    + ("create it" if not found else "set hosted_zone_id")
                )
            self._zone_id = found[0]
        return self._zone_id

    # -- reads --------------------------------------------------------------------

    def _read_one(self, key: RecordKey) -> Record | None:
        name, rtype = key
        sets = self._in_zone(f"read {name} {rtype}", lambda zone: (
            self._client.list_resource_record_sets(
                HostedZoneId=zone, StartRecordName=name,
                StartRecordType=rtype,  # type: ignore[arg-type]
                MaxItems="1",
            )["ResourceRecordSets"]))
        # The listing starts at the key; the first set is someone else's when ours is absent.
        for rrset in sets:
            if _unescape(rrset["Name"]) != name or rrset["Type"] != rtype:
                return None
            if "AliasTarget" in rrset or "SetIdentifier" in rrset:
                raise ProviderError(
                    f"{self.name}: {name} {rtype} is an alias or routing-policy record set; "
                    "failover manages plain record sets only", provider=self.name,
                    code="UNSUPPORTED",
                )
            return Record(name, rtype, rrset.get("TTL", 0),
                          tuple(r["Value"] for r in rrset.get("ResourceRecords", [])))
        return None

    def _read(self, keys: Sequence[RecordKey]) -> dict[RecordKey, Record]:
        found = {key: self._read_one(key) for key in keys}
        return {key: record for key, record in found.items() if record is not None}

    # -- apply --------------------------------------------------------------------

    def _check_unchanged(self, plan: Plan) -> None:
        """Refuse when a record set the plan touches is no longer what the plan saw."""
        current = self._read([c.key for c in plan.changes])
        stale = []
        for change in plan.changes:
            now = current.get(change.key)
            seen = None if isinstance(change, Create) else change.existing
            if now != seen:
                stale.append(
                    f"{change.key[0]} {change.key[1]} is now "
                    f"{now.describe() if now else 'absent'}, the plan saw "
                    f"{seen.describe() if seen else 'it absent'}"
                )
        if stale:
            raise PrerequisiteFailed(
                f"{self.name}: records changed since the plan was made ({'; '.join(stale)}); "
                "nothing was changed. Plan again and review",
                provider=self.name, code="STALE_PLAN",
            )

    @staticmethod
    def _batch(plan: Plan) -> list[ChangeTypeDef]:
        batch: list[ChangeTypeDef] = []
        for change in plan.changes:
            if isinstance(change, Create):
                batch.append(_change("CREATE", change.desired))
            elif isinstance(change, Update):
                batch += [_change("DELETE", change.existing), _change("UPSERT", change.desired)]
            elif isinstance(change, Delete):
                batch.append(_change("DELETE", change.existing))
        return batch

    def _apply(self, plan: Plan) -> None:
        self._check_unchanged(plan)
        batch: ChangeBatchTypeDef = {
            "Comment": f"failover plan {plan.checksum()[:12]}", "Changes": self._batch(plan),
        }
        info = self._in_zone("apply the change batch", lambda zone: (
            self._client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=batch)
        )["ChangeInfo"])
        log_event("dns.change", provider=self.name, change_id=info["Id"], status=info["Status"])
        if info["Status"] != "INSYNC":
            self._wait_insync(info["Id"])

    def _wait_insync(self, change_id: str) -> None:
        """Wait until Route 53 says the change reached all its name servers."""
        def insync() -> bool:
            with self._calling(f"read the status of change {change_id}"):
                return self._client.get_change(Id=change_id)["ChangeInfo"]["Status"] == "INSYNC"

        try:
            # The change is accepted: a status read that got no answer is worth
            # another look; one that was refused (keys, no such change) is not.
            wait_for(insync, timeout=self.settings.sync_timeout, interval=2.0,
                     what=f"Route 53 change {change_id} to be INSYNC",
                     retry_on=ProviderUnreachable)
        except WaitTimeout as exc:
            raise ProviderError(
                f"{self.name}: change {change_id} was accepted but is still not on every "
                f"Route 53 name server after {self.settings.sync_timeout:g}s",
                provider=self.name, code="PENDING",
            ) from exc

    # -- verify -------------------------------------------------------------------

    def _verify_sources(self) -> Sequence[tuple[str, Reader]]:
        if self.settings.verify_via == "api":
            return [(f"api {self.endpoint}", self._read)]
        return [(ns, partial(self._ask_nameserver, ns)) for ns in self._delegation()]

    def _delegation(self) -> list[str]:
        """The names of the zone's Route 53 name servers."""
        zone = self._in_zone(f"read the delegation set of {self.zone}",
                             lambda zone_id: self._client.get_hosted_zone(Id=zone_id))
        names = list(zone.get("DelegationSet", {}).get("NameServers", []))
        if not names:
            raise ProviderError(f"{self.name}: {self.zone} has no delegation set",
                                provider=self.name, code="NO_NAMESERVERS")
        return names

    def _ask_nameserver(self, ns: str, keys: Sequence[RecordKey]) -> dict[RecordKey, Record]:
        """Resolve one name server's address, then ask it directly."""
        resolver = dns.resolver.Resolver()
        resolver.lifetime = self.settings.timeout
        try:
            address = resolver.resolve(ns, "A")[0].to_text()
        except dns.exception.DNSException as exc:
            raise ProviderUnreachable(
                f"{self.name}: cannot resolve Route 53 name server {ns}: {exc}",
                provider=self.name, code="NS_UNRESOLVED",
            ) from exc
        return authoritative.read_records(
            address, 53, keys, timeout=self.settings.timeout, provider=self.name,
        )
