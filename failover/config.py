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
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from failover.cluster.config import ClusterConfig
from failover.configpaths import default_state_dir as default_state_dir  # its old home
from failover.configpaths import resolve_paths
from failover.dns.registry import DnsSettings
from failover.exceptions import ConfigError
from failover.fieldpath import field_path
from failover.provision.config import ProvisionConfig
from failover.stores import ObjectStoreConfig, RepositoryConfig
from failover.watch.drillconfig import FreezeWindow, ScheduledDrills
from failover.watch.providers import ApiSettings

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


class AgentComputeConfig(_Strict):
    """A site whose host runs ``failover agent``: the engine's only hands on it."""

    kind: Literal["agent"]
    url: str = Field(description="the agent's API, e.g. http://10.0.0.5:7070")
    secret_file: Path = Field(description="the site's agent secret (0600), shared with it")
    timeout: float = Field(5.0, gt=0, le=60, description="seconds for one request")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


ComputeConfig = Annotated[AgentComputeConfig, Field(discriminator="kind")]


# Every kind of provider API comes from its registry (failover.watch.providers).
ProviderApiConfig = Annotated[ApiSettings, Field(discriminator="kind")]


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
    api: ProviderApiConfig | None = Field(
        None, description="the provider's API, probed by failover watch: a timeout or 5xx is "
        "unhealthy, refused credentials or a blocked account are a termination signal",
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


# Every kind of DNS provider comes from its registry (failover.dns.registry).
DnsProviderConfig = Annotated[DnsSettings, Field(discriminator="kind")]


class ProbeSettings(_Strict):
    """How often one kind of probe looks, and how long one look may take."""

    interval: float = Field(1.0, gt=0, le=3600, description="seconds between looks")
    timeout: float = Field(1.0, gt=0, le=120, description="seconds one look may take")


class VantageConfig(_Strict):
    """A probe location with its own identity (in the lab: its own loopback address)."""

    source_address: IPvAnyAddress | None = Field(
        None, description="the local address the probes' connections leave from",
    )


class MailboxConfig(_Strict):
    """An IMAP inbox where providers' abuse and termination letters arrive."""

    host: str
    port: int = Field(993, ge=1, le=65535)
    tls: bool = Field(True, description="IMAP over TLS (993); false: plain IMAP, loopback only")
    user: str
    password_file: Path = Field(description="the mailbox password, in a 0600 file")
    folder: str = "INBOX"
    interval: float = Field(30.0, gt=0, description="seconds between polls")


ProbeName = Literal["http", "database", "dns", "api"]


def _default_probes() -> dict[ProbeName, ProbeSettings]:
    return {"http": ProbeSettings(), "database": ProbeSettings(), "dns": ProbeSettings(),
            "api": ProbeSettings(interval=5.0, timeout=5.0)}


class WatchConfig(_Strict):
    """The controller (failover watch): what it probes, when it acts, where it listens."""

    listen: str = Field("127.0.0.1:8470", description="host:port of the controller's HTTP API")
    tick: float = Field(1.0, gt=0, le=60, description="seconds between decisions")
    probes: dict[ProbeName, ProbeSettings] = Field(
        default_factory=_default_probes)
    failures: int = Field(3, ge=1, le=100, description="failed looks in a row, at one vantage "
                          "point, before that vantage point calls a site down")
    quorum: int | None = Field(None, ge=1, description="vantage points that must agree a site "
                               "is down (default: a majority)")
    vantage_points: dict[str, VantageConfig] = Field(
        default_factory=lambda: {"local": VantageConfig()}, min_length=1)
    mode: Literal["auto", "approve"] = Field(
        "auto", description="auto: act on a decision; approve: wait for failover approve RUN")
    notice_margin_seconds: float = Field(
        7200.0, ge=0, description="a planned move starts this long before a notice's deadline "
        "(at once when less is left)")
    accept_data_loss: bool = Field(
        False, description="an emergency promote may lose writes the standby had not received")
    webhook_secret_file: Path | None = Field(
        None, description="the signed webhook's shared secret, in a 0600 file (or "
        "$FAILOVER_WEBHOOK_SECRET)")
    max_signature_age: float = Field(
        300.0, gt=0, description="seconds a signed request stays fresh (older: stale)")
    notify_url: str | None = Field(None, description="every decision is POSTed here, signed")
    notify_secret_file: Path | None = Field(
        None, description="the secret that signs notifications, in a 0600 file (or "
        "$FAILOVER_NOTIFY_SECRET); never the webhook's: receivers must not be able to sign "
        "signals")
    mailbox: MailboxConfig | None = None
    lease_seconds: float = Field(
        10.0, ge=0, le=300, description="how long the primary's lease lasts from a renewal; "
        "a primary whose lease lapses fences itself. 0: no leases (then a primary that "
        "comes back after a blackout is fenced only when the controller sees it)")
    lease_renew_every: float = Field(
        2.0, gt=0, le=60, description="seconds between renewals (at most a quarter of "
        "lease_seconds, so that a missed renewal or two fences nothing)")
    drills: ScheduledDrills = Field(default_factory=list, description="drills run on a "
                                    "schedule (failover.watch.drillconfig)")
    freeze_windows: list[FreezeWindow] = Field(default_factory=list, description="times no "
                                               "scheduled drill starts")
    cluster: ClusterConfig | None = Field(
        None, description="the etcd cluster on which one controller per site elects the "
        "leader (failover.cluster.config); without it one controller runs alone")

    @model_validator(mode="after")
    def _lease(self) -> WatchConfig:
        if self.lease_seconds and self.lease_renew_every > self.lease_seconds / 4:
            raise ValueError(f"lease_renew_every ({self.lease_renew_every:g}s) must be at most "
                             f"a quarter of lease_seconds ({self.lease_seconds:g}s)")
        return self

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} must be host:port, e.g. 127.0.0.1:8470")
        return value

    @property
    def needed(self) -> int:
        """How many vantage points must agree that a site is down."""
        return self.quorum or len(self.vantage_points) // 2 + 1


class SpareConfig(SiteConfig):
    """A site that runs nothing yet: what ``failover rebuild`` makes, and how.

    Everything a site has, with its address reserved ahead (a primary IP or an
    Elastic IP), so that DNS, firewalls and the other sites' pg_hba.conf can
    name it before it exists; plus how to provision its host and the agent
    config that host gets through cloud-init.
    """

    provision: ProvisionConfig
    agent_config_file: Path = Field(description="the new host's agent config (its site's name, "
                               "paths and backup section), sent in its user-data; "
                               "${address} in it becomes the host's address")
    # Paths on the new host, not here: text, never resolved or looked for locally.
    agent_config_path: str = Field("/etc/failover/agent.yaml", pattern=r"^/",
                                   description="where the host keeps it")
    agent_secret_path: str = Field("/etc/failover/agent.secret", pattern=r"^/",
                                   description="where the host keeps its agent's secret")
    requirement: str = Field("failover", description="what the host's pip installs")
    boot_timeout: float = Field(900.0, gt=0, description="seconds from create to the agent "
                                "answering (cloud-init installs packages first)")


class BackupsConfig(_Strict):
    """pgBackRest's repositories, and how often the controller asks the primary for backups.

    The primary's agent archives WAL to, and backs up into, each repository at
    a provider other than its own (the agents' configs name the same ones).
    """

    stanza: str = Field("main", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    repositories: dict[str, RepositoryConfig] = Field(min_length=1)
    incr_every: float = Field(3600.0, gt=0, description="seconds between incremental backups")
    diff_every: float = Field(86400.0, gt=0, description="seconds between differential ones")
    full_every: float = Field(604800.0, gt=0, description="seconds between full backups")


class FailoverConfig(_Strict):
    """The whole deployment: sites, DNS providers, the zone, objectives."""

    sites: dict[str, SiteConfig]
    dns_providers: dict[str, DnsProviderConfig]
    dns: DnsConfig
    objectives: Objectives = Objectives()
    watch: WatchConfig = WatchConfig()
    backups: BackupsConfig | None = None
    spares: dict[str, SpareConfig] = Field(
        default_factory=dict, description="sites `failover rebuild` can make from nothing")
    journal: Path = Field(description="the run journal (default: journal.sqlite beside the file)")
    _local_state: bool = PrivateAttr(False)  # set by without_cluster(), never by the file

    @property
    def local_state(self) -> bool:
        """Whether the store, run journal and run lock are the files beside the journal even
        though ``watch.cluster`` is set (``without_cluster``; failover.state)."""
        return self._local_state

    def without_cluster(self) -> FailoverConfig:
        """This configuration with its state in local files: for a run while the etcd
        cluster has lost quorum (``failover rebuild --without-cluster``)."""
        copy = self.model_copy()
        copy._local_state = True
        return copy

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
        for name in self.spares:
            if name in self.sites:
                problems.append(f"spares.{name}: {name} is a site already; a spare is one "
                                "that runs nothing yet")
        for name, site in self.sites.items():
            if self.backups is not None and all(
                    r.provider == site.provider for r in self.backups.repositories.values()):
                problems.append(
                    f"backups.repositories: none is at a provider other than {site.provider}, "
                    f"site {name!r}'s: its backups would die with it")
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
        cluster = self.watch.cluster
        places = [*self.sites, *self.spares]
        for name in sorted(set(cluster.controllers) - set(places)) if cluster else ():
            problems.append(f"watch.cluster.controllers.{name}: no site or spare is called "
                            f"{name!r}; there are: {', '.join(places)}")
        if self.watch.quorum and self.watch.quorum > len(self.watch.vantage_points):
            problems.append(
                f"watch.quorum: {self.watch.quorum} is more than the "
                f"{len(self.watch.vantage_points)} vantage points there are"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_spare(self, name: str) -> FailoverConfig:
        """The configuration with spare ``name`` among its sites: what a rebuild works on."""
        if name in self.sites:
            return self
        if name not in self.spares:
            raise ConfigError(f"no site or spare {name!r} in the configuration; spares: "
                              f"{', '.join(self.spares) or 'none'}")
        return self.model_copy(update={
            "sites": {**self.sites, name: self.spares[name]},
            "spares": {k: v for k, v in self.spares.items() if k != name}})

    def site(self, name: str) -> SiteConfig:
        """A site by name, or a ConfigError naming the sites there are."""
        try:
            return self.sites[name]
        except KeyError:
            raise ConfigError(
                f"no site {name!r} in the configuration; sites: {', '.join(self.sites)}"
            ) from None


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
            # dns_providers.bind9.port, as a person wrote it (pydantic inserts the `kind` tag).
            where = field_path(FailoverConfig, error["loc"])
            for one in message.split("; "):
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


def missing_files(config: BaseModel, where: str = "") -> list[str]:
    """Every file or folder the configuration names that does not exist, with its field path.

    The journal is left out: the engine creates it. Checked when a deployment is
    opened, not at parse time, so a configuration can be validated elsewhere.
    """
    found = []
    for name, value in config:
        path = f"{where}.{name}" if where else name
        if isinstance(value, BaseModel):
            found += missing_files(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    found += missing_files(item, f"{path}.{key}")
        elif isinstance(value, Path) and name != "journal" and not value.exists():
            found.append(f"{path}: {value} does not exist")
    return found
