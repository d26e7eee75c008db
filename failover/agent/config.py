"""The agent's configuration: one host, its PostgreSQL server and its app.

The same file serves the lab (``lab up`` writes one per site) and a real
host (cloud-init writes ``/etc/failover/agent.yaml``). Paths are absolute or
relative to the file; secrets are never in it, only the files that hold them.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from failover.cluster.config import MARGIN, ClusterConfig
from failover.configpaths import resolve_paths
from failover.exceptions import ConfigError
from failover.stores import ObjectStoreConfig, RepositoryConfig

_SITE = re.compile(r"[a-z][a-z0-9-]{0,31}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostgresSpec(_Strict):
    """The site's PostgreSQL server as the agent runs it (in the foreground, its child)."""

    bindir: Path = Field(description="where postgres, pg_rewind and pg_basebackup are")
    data_dir: Path
    address: str = Field(description="the address it listens on (and the agent reaches it at)")
    port: int = Field(5432, ge=1, le=65535)
    os_user: str | None = Field("postgres", description="the OS user it runs as; null: ours")
    superuser: str = "postgres"
    replication_user: str = "replicator"
    passfile: Path = Field(description="pgpass file (0600) with both users' passwords")
    settings: dict[str, str] = Field(
        default_factory=dict, description="-c name=value on its command line")
    log: Path


class AppSpec(_Strict):
    """The site's app: a command the agent runs and restarts."""

    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    log: Path


class BackupSpec(_Strict):
    """Continuous WAL archiving and backups with pgBackRest, off this host's provider."""

    stanza: str = Field("main", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    repositories: dict[str, RepositoryConfig] = Field(min_length=1)
    dir: Path = Field(description="pgBackRest's config, spool and logs (owned by the "
                      "server's OS user)")
    archive_timeout: int = Field(5, ge=1, le=3600, description="seconds: a WAL segment is "
                                 "archived at most this long after a write (the RPO)")
    process_max: int = Field(2, ge=1, le=64)
    retention_full: int = Field(2, ge=1, le=100)
    io_timeout: int = Field(10, ge=1, le=600, description="seconds for one storage request")
    timeout: float = Field(3600.0, gt=0, description="seconds one backup or restore may take")

    def used(self, provider: str) -> dict[str, RepositoryConfig]:
        """The repositories a host at ``provider`` archives to: those elsewhere, by name."""
        return {name: repo for name, repo in sorted(self.repositories.items())
                if repo.provider != provider}


class ReplicaSpec(_Strict):
    """A bucket at some provider that the site's objects are copied into."""

    provider: str
    store: ObjectStoreConfig


class ObjectsSpec(_Strict):
    """The site's bucket, and where each object it takes is copied while the site is primary."""

    bucket: ObjectStoreConfig
    replicas: dict[str, ReplicaSpec] = Field(min_length=1)
    interval: float = Field(1.0, gt=0, le=300, description="seconds between passes")

    def used(self, provider: str) -> dict[str, ObjectStoreConfig]:
        """The buckets a primary at ``provider`` copies into: those elsewhere, by name."""
        return {name: r.store for name, r in sorted(self.replicas.items())
                if r.provider != provider}


def lease_timing_problems(ttl: int, retry_timeout: float, failsafe_timeout: float) -> list[str]:
    """What is wrong with the primary's lease's timing (none: it is sound).

    The agent renews every ``ttl / 3`` seconds and is sure of its lease until
    ``ttl - MARGIN`` after a renewal was sent. The cycle after it may find etcd
    slow (two requests of ``retry_timeout``) or gone (one request's
    ``retry_timeout``, then the peers' failsafe round of ``failsafe_timeout``),
    and must still end before that window closes.
    """
    cycle = 2 * retry_timeout + failsafe_timeout
    if ttl / 3 + cycle + MARGIN > ttl:
        return [f"ttl / 3 ({ttl / 3:.3g}s) + 2 * retry_timeout ({retry_timeout:g}s) + "
                f"failsafe_timeout ({failsafe_timeout:g}s) + {MARGIN:g}s must be at most ttl "
                f"({ttl}s): a renewal that finds etcd slow or gone must end before the lease "
                "would"]
    return []


class ClusterSpec(_Strict):
    """The etcd cluster in which this agent holds the primary's lease, and its failsafe.

    See ``failover.agent.clusterlease`` (the lease) and ``failover.agent.failsafe``
    (what a primary does when etcd is out of its reach).
    """

    endpoints: list[str] = Field(min_length=1, description="the etcd members' client URLs, "
                                 "as in the deployment's watch.cluster.endpoints")
    name: str = Field("default", pattern=r"^[A-Za-z0-9_-]{1,63}$", description="the "
                      "deployment's keys live under /failover/<name>/ (watch.cluster.name)")
    ttl: int = Field(10, ge=3, le=300, description="seconds the primary's lease outlives its "
                     "agent's last renewal (every ttl / 3); its server is fenced at its end")
    retry_timeout: float = Field(1.5, gt=0, le=60, description="seconds one request to etcd "
                                 "may take, all endpoints tried")
    failsafe: bool = Field(True, description="while etcd is out of reach, the primary stays "
                           "unfenced as long as every peer's agent vouches that it is no "
                           "primary (Patroni's failsafe_mode); false: it fences at the lease's "
                           "end")
    failsafe_timeout: float = Field(1.5, gt=0, le=60, description="seconds the peers' agents "
                                    "have to answer a failsafe round")
    peers: dict[str, str] = Field(default_factory=dict, description="the other sites' agents "
                                  "by site (their URLs): every site that can become a primary; "
                                  "each of them lists this one (a promote relies on it)")
    peer_secret_file: Path | None = Field(None, description="the secret the sites' agents "
                                          "share for failsafe rounds (0600), not the "
                                          "controller's: it lets an agent ask, not command")

    @field_validator("endpoints")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        try:  # the controllers' rules for the members' URLs
            return ClusterConfig(endpoints=value).endpoints
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: dict[str, str]) -> dict[str, str]:
        for site, url in value.items():
            if not _SITE.fullmatch(site):
                raise ValueError(f"{site!r}: a site's name is lower-case letters, digits and "
                                 "dashes")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{site}: {url!r} must be http(s)://host:port")
        return {site: url.rstrip("/") for site, url in value.items()}

    @model_validator(mode="after")
    def _timing(self) -> ClusterSpec:
        problems = lease_timing_problems(self.ttl, self.retry_timeout,
                                         self.failsafe_timeout if self.failsafe else 0.0)
        if self.failsafe and self.peers and self.peer_secret_file is None:
            problems.append("failsafe with peers needs peer_secret_file: the peers' agents "
                            "answer only a round signed with it")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class AgentConfig(_Strict):
    """One agent: where it listens, its secret, its state, what it supervises."""

    site: str
    listen: str = Field(description="ADDRESS:PORT of the agent's API")
    secret_file: Path = Field(description="the per-site secret requests are signed with (0600)")
    state_dir: Path = Field(description="journal, lease and children files (made 0700)")
    postgres: PostgresSpec
    app: AppSpec | None = None
    provider: str | None = Field(None, description="the provider this host is at: backups "
                                 "and copies of objects go to others (needed by both)")
    backup: BackupSpec | None = None
    objects: ObjectsSpec | None = None
    max_signature_age: float = Field(30.0, gt=0, le=300)
    require_token: bool = Field(False, description="refuse a request that would change "
                                "something without a leader's fencing token (every "
                                "controller is elected)")
    cluster: ClusterSpec | None = Field(None, description="hold the primary's lease in etcd "
                                        "(failover.agent.clusterlease); without it a "
                                        "controller renews it")

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        if not _SITE.fullmatch(value):
            raise ValueError("a site's name is lower-case letters, digits and dashes")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        try:
            ipaddress.ip_address(host)
            if not 1 <= int(port) <= 65535:
                raise ValueError
        except ValueError:
            raise ValueError("must be ADDRESS:PORT, e.g. 10.0.0.5:7070") from None
        return value

    @model_validator(mode="after")
    def _off_provider(self) -> AgentConfig:
        for section, spec in (("backup", self.backup), ("objects", self.objects)):
            if spec is None:
                continue
            if self.provider is None:
                raise ValueError(f"{section} needs provider: the provider this host is at")
            if not spec.used(self.provider):
                raise ValueError(f"{section}: every store is at {self.provider}, this host's "
                                 "own provider: copies must live at another")
        if self.cluster is not None and self.site in self.cluster.peers:
            raise ValueError(f"cluster.peers names this agent's own site ({self.site}): peers "
                             "are the other sites")
        return self

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the API listens on."""
        host, _, port = self.listen.rpartition(":")
        return host, int(port)


def load_agent_config(path: Path) -> AgentConfig:
    """Read and check an agent's config file; a ConfigError names what is wrong."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"agent config {path} not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read agent config {path}: {' '.join(str(exc).split())}") \
            from None
    try:
        return AgentConfig.model_validate(resolve_paths(data, path.parent.absolute()))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = "is required" if first["type"] == "missing" else \
            first["msg"].removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{path}: {where}: {message}{more}") from None


def dump_agent_config(config: AgentConfig) -> str:
    """The config as YAML (what ``lab up`` writes)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
