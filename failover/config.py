"""The deployment's configuration: one YAML file, validated at load.

Every problem is reported at once, each with its field path (Patroni's
validator is the model), and cross-field rules live in one place:
``FailoverConfig._cross_checks``. Relative paths in the file (password files,
key files) are taken relative to the file itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    ValidationError,
    field_validator,
    model_validator,
)

from failover.dns.rfc2136 import Rfc2136Settings
from failover.dns.route53 import Route53Settings
from failover.exceptions import ConfigError

CONFIG_FILE_NAME = "failover.yaml"
LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
RELATIVE_NAME = re.compile(rf"{LABEL}(\.{LABEL})*")  # labels of a name inside the zone
JOURNAL_FILE_NAME = "journal.sqlite"  # beside the configuration unless it says otherwise


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    """How the failover engine reaches a site's PostgreSQL server (as a superuser)."""

    host: str
    port: int = Field(5432, ge=1, le=65535)
    user: str = "postgres"
    dbname: str = "postgres"
    passfile: Path | None = None  # libpq password file, 0600
    application_name: str | None = Field(
        None, description="the name this server streams under as a standby (default: the site)"
    )
    app_dbname: str = Field(
        "social", description="the app's database, where a drill looks for every write it "
        "saw acknowledged",
    )


class ObjectStoreConfig(_Strict):
    """A site's S3-compatible bucket."""

    endpoint_url: str | None = None
    bucket: str
    region: str = "us-east-1"
    credentials_file: Path | None = None  # AWS shared-credentials file, 0600
    timeout: float = Field(
        default=20.0, gt=0, le=300,
        description="seconds to wait for an answer to one request (connect: at most 5)",
    )


class LabComputeConfig(_Strict):
    """A site whose processes the embedded lab runs (its state dir holds lab.json)."""

    kind: Literal["lab"]
    state_dir: Path


ComputeConfig = Annotated[LabComputeConfig, Field(discriminator="kind")]


class SiteConfig(_Strict):
    """One deployment of the app on one provider in one place."""

    provider: str = Field(description="aws, hetzner, lab, ...")
    address: IPvAnyAddress
    app_url: str
    database: DatabaseConfig
    objects: ObjectStoreConfig
    compute: ComputeConfig | None = Field(
        None, description="how the engine restarts and rebuilds the site's database server; "
        "without it, a former primary must be rejoined by hand",
    )

    @field_validator("app_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class RecordConfig(_Strict):
    """A record that follows the primary: its value is the primary site's address."""

    name: str = Field(description="label relative to the zone, or @ for the apex")
    type: Literal["A", "AAAA"] = "A"
    ttl: int = Field(300, ge=1, le=86400)

    @field_validator("name")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value != "@" and (value.endswith(".") or not RELATIVE_NAME.fullmatch(value)):
            raise ValueError(f"{value!r} must be a name relative to the zone (e.g. app), or @")
        return value.lower()


class DnsConfig(_Strict):
    """The zone, the records that move with the primary, and the TTL used during a move."""

    zone: str
    records: list[RecordConfig] = Field(min_length=1)
    low_ttl: int = Field(5, ge=1, le=3600, description="TTL while a move is prepared")

    @field_validator("zone")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.endswith("."):
            raise ValueError("must be absolute (end with a dot), e.g. example.com.")
        return value.lower()


class Objectives(_Strict):
    """What a site promises: a drill passes or fails on these."""

    rto_seconds: float = Field(60.0, gt=0)
    rpo_writes: int = Field(0, ge=0, description="acknowledged writes that may be lost")


DnsProviderConfig = Annotated[Rfc2136Settings | Route53Settings, Field(discriminator="kind")]


class FailoverConfig(_Strict):
    """The whole deployment: sites, DNS providers, the zone, objectives."""

    sites: dict[str, SiteConfig]
    dns_providers: dict[str, DnsProviderConfig]
    dns: DnsConfig
    objectives: Objectives = Objectives()
    journal: Path = Field(description="the run journal (default: journal.sqlite beside the file)")

    @model_validator(mode="after")
    def _cross_checks(self) -> FailoverConfig:
        problems = []
        if len(self.sites) < 2:
            problems.append("sites: at least two sites are needed to fail over")
        if not self.dns_providers:
            problems.append("dns_providers: at least one DNS provider is needed")
        for name, provider in self.dns_providers.items():
            if provider.zone.lower() != self.dns.zone:
                problems.append(
                    f"dns_providers.{name}.zone: {provider.zone!r} is not the zone "
                    f"{self.dns.zone!r} of dns.zone"
                )
        seen: dict[str, str] = {}
        for name, site in self.sites.items():
            if str(site.address) in seen:
                problems.append(
                    f"sites.{name}.address: {site.address} is also the address of "
                    f"site {seen[str(site.address)]!r}"
                )
            seen[str(site.address)] = name
            for i, record in enumerate(self.dns.records):
                if site.address.version != (4 if record.type == "A" else 6):
                    problems.append(
                        f"dns.records.{i}.type: {record.type} cannot carry the IPv"
                        f"{site.address.version} address {site.address} of site {name!r}"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def site(self, name: str) -> SiteConfig:
        """A site by name, or a ConfigError naming the sites there are."""
        try:
            return self.sites[name]
        except KeyError:
            raise ConfigError(
                f"no site {name!r} in the configuration; sites: {', '.join(self.sites)}"
            ) from None


DISCRIMINATOR_TAGS = frozenset({"rfc2136", "route53", "lab"})  # the `kind` values


def _location(loc: tuple[int | str, ...]) -> str:
    # pydantic puts the discriminator's tag in the path (dns_providers.bind9.rfc2136.port);
    # a person wrote dns_providers.bind9.port.
    parts = [str(p) for p in loc if p not in DISCRIMINATOR_TAGS]
    return ".".join(parts) or "(top level)"


PATH_KEYS = ("file", "state_dir", "journal")


def resolve_paths(data: Any, base: Path) -> Any:
    """Make relative file paths absolute against the config file's folder."""
    if isinstance(data, dict):
        return {
            k: (str(base / v) if k.endswith(PATH_KEYS) and isinstance(v, str)
                and not Path(v).is_absolute() else resolve_paths(v, base))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [resolve_paths(v, base) for v in data]
    return data


def parse_config(data: Any, source: str, base: Path) -> FailoverConfig:
    """Validate parsed YAML; every problem is named in one ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with sites, dns_providers and dns")
    try:
        # The journal lives beside the file unless the file says otherwise.
        data = {"journal": JOURNAL_FILE_NAME, **data}
        return FailoverConfig.model_validate(resolve_paths(data, base))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required"
            for one in message.split("; "):
                where = _location(error["loc"])
                problems.append(one if where == "(top level)" else f"{where}: {one}")
        noun = "problem" if len(problems) == 1 else "problems"
        raise ConfigError(
            f"{source} has {len(problems)} {noun}:\n" + "\n".join(f"  - {p}" for p in problems)
        ) from None


def load_config(path: Path) -> FailoverConfig:
    """Read and validate a configuration file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") \
            from None
    return parse_config(data, str(path), path.parent.absolute())
