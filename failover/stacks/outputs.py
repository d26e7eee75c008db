"""What a site's stack exports: the contract between ``stacks/`` and ``failover.yaml``.

``infra.components.program.site_stack`` makes these outputs and
``failover config from-stacks`` reads them (``failover stack outputs --json``
of each stack, or a file of them). Every stack exports the site's identity and
addresses, its database, its bucket and its agent; some export more:

- ``api``: how the controller watches the provider's API (``ec2`` or ``hcloud``);
- ``provision`` and ``agent_config``: a spare's, how ``failover rebuild`` makes its host;
- ``repositories``: pgBackRest's repositories the stack made;
- ``dns``: the zone, from the one stack that holds it.

The secrets are Pulumi secrets (``SECRET_OUTPUTS``); ``from-stacks`` writes each
to a 0600 file and the configuration names the file, never the secret.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, ValidationError

from failover.exceptions import ConfigError
from failover.stacks.workspace import SECRET_MASK

# Exported as Pulumi secrets; `tests/stacks` holds every stack to it.
SECRET_OUTPUTS = frozenset({"agent_secret", "objects_credentials", "controller_credentials",
                            "repository_credentials", "dns_credentials", "tsig_key"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeysOutput(_Strict):
    """An S3 or IAM access key pair."""

    access_key_id: str = Field(min_length=1)
    secret_access_key: str = Field(min_length=1)

    def __repr__(self) -> str:  # never print the secret half
        return f"KeysOutput(access_key_id={self.access_key_id!r})"


class DatabaseOutput(_Strict):
    """Where the site's PostgreSQL answers."""

    host: str
    port: int = Field(ge=1, le=65535)
    user: str
    dbname: str
    app_dbname: str


class ObjectsOutput(_Strict):
    """The site's bucket."""

    endpoint_url: str
    bucket: str
    region: str


class Ec2ApiOutput(_Strict):
    """The controller watches EC2 in this region with ``controller_credentials``."""

    kind: Literal["ec2"]
    region: str


class HcloudApiOutput(_Strict):
    """The controller watches Hetzner Cloud's API with a token the operator gives it."""

    kind: Literal["hcloud"]
    endpoint: str


class HcloudProvisionOutput(_Strict):
    """How ``failover rebuild`` makes a spare's host (its token is the operator's)."""

    kind: Literal["hcloud"]
    location: str
    server_type: str
    image: str
    network_ip_range: str
    admin_sources: list[str]


class RepositoryOutput(_Strict):
    """A pgBackRest repository: a bucket at an S3 endpoint (host name, TLS)."""

    provider: str
    endpoint: str
    port: int = Field(ge=1, le=65535)
    bucket: str
    region: str
    path: str
    uri_style: Literal["host", "path"]


class RecordOutput(_Strict):
    """A record that follows the primary."""

    name: str
    type: Literal["A", "AAAA"]
    ttl: int


class Rfc2136Output(_Strict):
    """The RFC 2136 server the records are also published to, and its key's name."""

    server: str
    port: int = Field(ge=1, le=65535)
    key_name: str
    algorithm: str


class DnsOutput(_Strict):
    """The zone: its records and TTLs, its Route 53 hosted zone, its RFC 2136 server."""

    zone: str
    records: list[RecordOutput] = Field(min_length=1)
    low_ttl: int
    route53_zone_id: str
    name_servers: list[str] = Field(default_factory=list)
    rfc2136: Rfc2136Output | None = None


class TsigKeyOutput(_Strict):
    """The RFC 2136 server's TSIG key (the secret in base64)."""

    name: str
    algorithm: str
    secret: str = Field(min_length=16)

    def __repr__(self) -> str:
        return f"TsigKeyOutput(name={self.name!r}, algorithm={self.algorithm!r})"


class StackOutputs(_Strict):
    """Every output of one site's stack."""

    site: str
    provider: Literal["aws", "hetzner"]
    role: Literal["primary", "standby", "spare"]
    address: IPvAnyAddress
    app_url: str
    agent_url: str
    app_version: str = Field(description="what pip installs on the site: the app's version")
    database: DatabaseOutput
    objects: ObjectsOutput
    agent_secret: str = Field(min_length=16)
    objects_credentials: KeysOutput
    api: Ec2ApiOutput | HcloudApiOutput = Field(discriminator="kind")
    controller_credentials: KeysOutput | None = None
    provision: HcloudProvisionOutput | None = None
    agent_config: str | None = None
    repositories: dict[str, RepositoryOutput] = Field(default_factory=dict)
    repository_credentials: dict[str, KeysOutput] = Field(default_factory=dict)
    dns: DnsOutput | None = None
    dns_credentials: KeysOutput | None = None
    tsig_key: TsigKeyOutput | None = None

    def __repr__(self) -> str:
        return f"StackOutputs(site={self.site!r}, role={self.role!r})"


def parse_outputs(stack: str, values: Any) -> StackOutputs:
    """One stack's outputs, checked; a ConfigError names the stack and the first bad field."""
    if not isinstance(values, dict):
        raise ConfigError(f"stack {stack}: expected its outputs as a mapping, got "
                          f"{type(values).__name__}")
    masked = sorted(name for name in SECRET_OUTPUTS if values.get(name) == SECRET_MASK)
    if masked:
        raise ConfigError(f"stack {stack}: output {masked[0]}: is masked ({SECRET_MASK}); "
                          "take the outputs with their secrets (--show-secrets)")
    try:
        outputs = StackOutputs.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        # The discriminated union puts its tag in the path (api.ec2.region): drop it.
        where = ".".join(str(p) for p in first["loc"] if p not in ("ec2", "hcloud"))
        problem = "is required" if first["type"] == "missing" else first["msg"]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        # The message quotes no input: an output may be a secret.
        raise ConfigError(f"stack {stack}: output {where}: {problem}{more}") from None
    if outputs.role == "spare" and (outputs.provision is None or outputs.agent_config is None):
        raise ConfigError(f"stack {stack}: output provision: a spare's stack must say how "
                          "its host is made (provision and agent_config)")
    if outputs.dns is not None and outputs.dns.rfc2136 is not None and outputs.tsig_key is None:
        raise ConfigError(f"stack {stack}: output tsig_key: the RFC 2136 server needs its key")
    return outputs
