"""A stack's settings: every ``pulumi.Config()`` read of the project happens here.

A stack deploys one site (``stacks/Pulumi.<stack>.yaml``). Its settings are
read once, checked all at once (every problem named, as ``failover.config``
does for ``failover.yaml``) and handed to the components as frozen
dataclasses, so no component reads configuration of its own.

The other sites' addresses are settings too (``failover:access.peers``): the
stacks are separate, and a site's firewall must name its peers before any of
them is up again. Secrets (Hetzner's object-storage keys) stay Pulumi secrets.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import pulumi

from failover.exceptions import ConfigError
from failover.provision.network import is_address

NAMESPACE = "failover"  # the project's own keys: failover:site, failover:role, ...
Provider = Literal["aws", "hetzner"]
Role = Literal["primary", "standby", "spare"]
RecordType = Literal["A", "AAAA"]

# Hetzner's object storage is in these locations only (its servers are in more).
OBJECT_STORAGE_LOCATIONS = ("fsn1", "nbg1", "hel1")
_SITE = re.compile(r"[a-z][a-z0-9-]{0,31}")  # as the agent's config wants it
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# An OpenSSH public key line: its type, its base64, a comment if any (never a private key).
_SSH_KEY = re.compile(r"(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|"
                      r"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+=*( .*)?")
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*|@")


@dataclass(frozen=True)
class Ports:
    """The TCP ports a site's host serves."""

    app: int = 8080
    agent: int = 7070
    database: int = 5432
    ssh: int = 22


@dataclass(frozen=True)
class Access:
    """Who may reach a site's private ports (PostgreSQL, the agent, SSH)."""

    peers: Mapping[str, str] = field(default_factory=dict)  # other sites: name -> address
    controller: tuple[str, ...] = ()  # addresses `failover watch` and the engine run from
    admin: tuple[str, ...] = ()  # operators' networks (CIDRs): SSH and the agent


@dataclass(frozen=True)
class AwsHost:
    """An EC2 host: where, what size, which image, in which network."""

    region: str
    instance_type: str = "t3.small"
    image: str | None = None  # an AMI id; None: the newest Debian 12 of Debian's account
    vpc_cidr: str = "10.20.0.0/16"
    subnet_cidr: str = "10.20.1.0/24"
    disk_gb: int = 30


@dataclass(frozen=True)
class HetznerHost:
    """A Hetzner Cloud host: where, what size, which image, its network and data volume."""

    location: str = "fsn1"
    server_type: str = "cx22"
    image: str = "debian-12"
    network_ip_range: str = "10.42.0.0/16"  # what `failover rebuild` makes for a spare
    volume_gb: int = 20


@dataclass(frozen=True)
class KeyPair:
    """An access key pair (AWS IAM, or Hetzner's S3 keys), both halves Pulumi secrets."""

    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]


@dataclass(frozen=True)
class RepositoryTarget:
    """A pgBackRest repository this stack makes: a bucket at a provider."""

    name: str
    provider: Provider
    region: str  # an AWS region, or a Hetzner location (fsn1, nbg1, hel1)
    bucket: str


@dataclass(frozen=True)
class ZoneRecord:
    """A record that follows the primary, relative to the zone (or @)."""

    name: str
    type: RecordType = "A"
    ttl: int = 300


@dataclass(frozen=True)
class Rfc2136Server:
    """The RFC 2136 server the records are also published to; its TSIG key is made here."""

    server: str
    port: int = 53
    key_name: str = "failover."
    algorithm: str = "hmac-sha256"


@dataclass(frozen=True)
class ZoneSettings:
    """The DNS zone one stack holds: its records, their TTLs, the TTL used during a move."""

    zone: str  # absolute, e.g. example.com.
    records: tuple[ZoneRecord, ...]
    low_ttl: int = 5
    primary_address: str | None = None  # needed when this stack's site is not the primary
    rfc2136: Rfc2136Server | None = None


@dataclass(frozen=True)
class SiteSettings:
    """Everything one site's stack needs, checked."""

    stack: str
    site: str
    provider: Provider
    role: Role
    requirement: str  # the app's version, as pip installs it on every site: failover==0.1.0
    bucket: str  # the site's object bucket (media)
    ports: Ports = Ports()
    access: Access = Access()
    aws: AwsHost | None = None
    hetzner: HetznerHost | None = None
    hetzner_keys: KeyPair | None = None  # Hetzner's S3 keys: made in its console, not its API
    backups: tuple[RepositoryTarget, ...] = ()
    zone: ZoneSettings | None = None
    ssh_public_key: str | None = None  # the operators' SSH key: `admin` at AWS, root at Hetzner


def load_settings() -> SiteSettings:
    """The current stack's settings, from its ``Pulumi.<stack>.yaml``; a ConfigError lists
    every problem."""
    config = pulumi.Config(NAMESPACE)
    stack = pulumi.get_stack()
    problems: list[str] = []
    provider = _choice(config.get("provider"), Provider, "provider", problems)
    access_key, secret_key = (config.get_secret("hetznerS3AccessKey"),
                              config.get_secret("hetznerS3SecretKey"))
    keys = (KeyPair(access_key, secret_key)
            if access_key is not None and secret_key is not None else None)
    settings = SiteSettings(
        stack=stack,
        site=config.get("site") or stack,
        provider=provider,
        role=_choice(config.get("role"), Role, "role", problems),
        requirement=config.get("requirement") or "",
        bucket=config.get("bucket") or "",
        ports=_built(Ports, config.get_object("ports") or {}, "ports", problems) or Ports(),
        access=_access(config.get_object("access") or {}, problems),
        aws=_aws(config, problems) if provider == "aws" else None,
        hetzner=(_built(HetznerHost, config.get_object("hetzner") or {}, "hetzner", problems)
                 if provider == "hetzner" else None),
        hetzner_keys=keys,
        backups=_each(RepositoryTarget, config.get_object("backups"), "backups", problems),
        zone=_zone(config.get_object("dns"), problems),
        ssh_public_key=(config.get("sshPublicKey") or "").strip() or None,
    )
    problems += check(settings)
    if problems:
        raise ConfigError(f"stack {stack}: " + "; ".join(problems))
    return settings


def check(settings: SiteSettings) -> list[str]:
    """What is wrong with ``settings``, each problem with its key; empty when all is well."""
    problems = []
    if not _SITE.fullmatch(settings.site):
        problems.append(f"site: {settings.site!r} must be lowercase letters, digits and '-', "
                        "starting with a letter, at most 32")
    if settings.role == "spare" and settings.provider != "hetzner":
        problems.append("role: a spare is made by `failover rebuild` through Hetzner Cloud's "
                        "API, so a spare at aws is not supported")
    if not settings.requirement or settings.requirement.startswith("-"):
        problems.append("requirement: the app's version as pip installs it is required, "
                        "e.g. failover==0.1.0")
    if not _BUCKET.fullmatch(settings.bucket):
        problems.append(f"bucket: {settings.bucket!r} is not a valid bucket name")
    problems += _check_access(settings.access, settings.site)
    needs_keys = settings.provider == "hetzner" or any(
        t.provider == "hetzner" for t in settings.backups)
    if needs_keys and settings.hetzner_keys is None:
        problems.append("hetznerS3AccessKey, hetznerS3SecretKey: Hetzner's object storage "
                        "needs its S3 keys (made in the Hetzner console), as secrets")
    if settings.hetzner is not None and settings.hetzner.location not in OBJECT_STORAGE_LOCATIONS:
        problems.append(f"hetzner.location: {settings.hetzner.location!r} has no Hetzner "
                        "object storage for the site's bucket (it is at "
                        f"{', '.join(OBJECT_STORAGE_LOCATIONS)})")
    for i, target in enumerate(settings.backups):
        if not _BUCKET.fullmatch(target.bucket):
            problems.append(f"backups.{i}.bucket: {target.bucket!r} is not a valid bucket name")
        if target.provider == "hetzner" and target.region not in OBJECT_STORAGE_LOCATIONS:
            problems.append(f"backups.{i}.region: {target.region!r} has no Hetzner object "
                            f"storage (it is at {', '.join(OBJECT_STORAGE_LOCATIONS)})")
    if settings.zone is not None:
        problems += _check_zone(settings.zone, settings.role)
    if settings.ssh_public_key is not None and not _SSH_KEY.fullmatch(settings.ssh_public_key):
        problems.append("sshPublicKey: expected one OpenSSH public key line "
                        "(ssh-ed25519 AAAA... you@host), as in ~/.ssh/id_ed25519.pub")
    return problems


def _check_access(access: Access, site: str) -> list[str]:
    """Peers and the controller are single addresses; no operator network is the world."""
    problems = []
    for name, address in access.peers.items():
        if name == site:
            problems.append(f"access.peers.{name}: a site is not its own peer")
        if not is_address(address):
            problems.append(f"access.peers.{name}: {address!r} must be one IP address "
                            "(the database port opens to it alone)")
    for i, address in enumerate(access.controller):
        if not is_address(address):
            problems.append(f"access.controller.{i}: {address!r} must be one IP address")
    for i, cidr in enumerate(access.admin):
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(f"access.admin.{i}: {cidr!r} is not an address or a CIDR")
            continue
        if network.prefixlen == 0:
            problems.append(f"access.admin.{i}: {cidr} is the whole Internet: name the "
                            "operators' own networks")
    return problems


def _check_zone(zone: ZoneSettings, role: Role) -> list[str]:
    problems = []
    if not zone.zone.endswith("."):
        problems.append(f"dns.zone: {zone.zone!r} must be absolute (end with a dot)")
    if not zone.records:
        problems.append("dns.records: at least one record must follow the primary")
    for i, record in enumerate(zone.records):
        if not _LABEL.fullmatch(record.name):
            problems.append(f"dns.records.{i}.name: {record.name!r} must be relative to the "
                            "zone, or @")
        if not 1 <= record.ttl <= 86400:
            problems.append(f"dns.records.{i}.ttl: {record.ttl} is not between 1 and 86400")
    if not 1 <= zone.low_ttl <= 3600:
        problems.append(f"dns.lowTtl: {zone.low_ttl} is not between 1 and 3600")
    if role != "primary" and zone.primary_address is None:
        problems.append("dns.primaryAddress: the records point at the primary, which is "
                        "another stack's site: give its address")
    if zone.primary_address is not None and not is_address(zone.primary_address):
        problems.append(f"dns.primaryAddress: {zone.primary_address!r} is not an IP address")
    if zone.rfc2136 is not None and not is_address(zone.rfc2136.server):
        problems.append(f"dns.rfc2136.server: {zone.rfc2136.server!r} is not an IP address")
    return problems


def _aws(config: pulumi.Config, problems: list[str]) -> AwsHost | None:
    region = pulumi.Config("aws").get("region")
    if region is None:
        problems.append("aws:region: an AWS site needs its region")
        return None
    values = {"region": region, **(config.get_object("aws") or {})}
    host: AwsHost | None = _built(AwsHost, values, "aws", problems)
    return host


def _access(values: Mapping[str, Any], problems: list[str]) -> Access:
    if not isinstance(values, Mapping):
        problems.append("access: expected a mapping of peers, controller and admin")
        return Access()
    unknown = set(values) - {"peers", "controller", "admin"}
    if unknown:
        problems.append(f"access: unknown keys {', '.join(sorted(unknown))}")
    peers = values.get("peers") or {}
    if not isinstance(peers, Mapping):
        problems.append("access.peers: expected a mapping of the other sites' names to "
                        "their addresses")
        peers = {}
    lists = {}
    for key in ("controller", "admin"):
        lists[key] = values.get(key) or []
        if not isinstance(lists[key], list):
            problems.append(f"access.{key}: expected a list of addresses")
            lists[key] = []
    return Access(peers={str(name): str(address) for name, address in peers.items()},
                  controller=tuple(map(str, lists["controller"])),
                  admin=tuple(map(str, lists["admin"])))


def _zone(values: Any, problems: list[str]) -> ZoneSettings | None:
    if values is None:
        return None
    if not isinstance(values, Mapping):
        problems.append("dns: expected a mapping with zone and records")
        return None
    values = dict(values)
    records = _each(ZoneRecord, values.pop("records", None), "dns.records", problems)
    rfc2136 = values.pop("rfc2136", None)
    server = _built(Rfc2136Server, rfc2136, "dns.rfc2136", problems) if rfc2136 else None
    zone: ZoneSettings = _built(ZoneSettings, {**values, "records": records, "rfc2136": server},
                                "dns", problems)
    return zone


def _each(cls: Any, values: Any, where: str, problems: list[str]) -> tuple[Any, ...]:
    """``cls`` of each entry of a list setting; the entries that are wrong are left out."""
    if not isinstance(values, list):
        if values is not None:
            problems.append(f"{where}: expected a list")
        return ()
    built = (_built(cls, entry, f"{where}.{i}", problems) for i, entry in enumerate(values))
    return tuple(entry for entry in built if entry is not None)


def _built(cls: Any, values: Any, where: str, problems: list[str]) -> Any:
    """``cls(**values)`` from camelCase keys; an unknown or missing key is a problem, and
    the defaults stand in so that every other problem is found too."""
    if not isinstance(values, Mapping):
        problems.append(f"{where}: expected a mapping")
        values = {}
    try:
        return cls(**{_snake(key): value for key, value in values.items()})
    except TypeError as exc:
        # dataclasses say "unexpected keyword argument 'x'" or "missing 1 required ...".
        problems.append(f"{where}: {str(exc).split('()', 1)[-1].strip()}")
        return None


def _choice(value: str | None, choices: Any, key: str, problems: list[str]) -> Any:
    allowed = get_args(choices)
    if value not in allowed:
        problems.append(f"{key}: {value!r} must be one of {', '.join(allowed)}")
        return cast(str, allowed[0])
    return value


def _snake(key: str) -> str:
    """``lowTtl`` -> ``low_ttl``: Pulumi's config keys are camelCase, our fields are not."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
