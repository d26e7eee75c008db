"""Command lines for one deployment, as an operator types them: psql, aws s3, curl, the hosts.

Every command stands on its own (it names its server, its port, its user and
the file its password is in), so that a block can be pasted into any
terminal during an incident. Secrets are never printed: a command names the
file that holds one, and one that must pass a secret on reads it into the
environment, never onto a command line.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from failover.config import FailoverConfig, SiteConfig
from failover.dns.records import Record
from failover.engine.deployment import Deployment
from failover.runbooks.hosts import HostFacts, Shown
from failover.stores import ObjectStoreConfig

CONNECT_TIMEOUT = "5"  # seconds: a psql that waits on a dark host must not hang a runbook
UNSAFE_IN_DOUBLE_QUOTES = ('"', "`", "\\")
SCRATCH = "${TMPDIR:-/tmp}"  # where a command leaves files for the next one


def aws_cli(region: str, endpoint_url: str | None, credentials_file: str | None) -> str:
    """``aws`` with the region, endpoint (moto's in the lab) and credentials file it needs."""
    env = f"AWS_SHARED_CREDENTIALS_FILE={credentials_file} " if credentials_file else ""
    endpoint = f" --endpoint-url {endpoint_url}" if endpoint_url else ""
    return f"{env}aws --region {region}{endpoint}"


def until(condition: str) -> str:
    """A loop that waits until a shell condition holds (Ctrl-C stops it)."""
    return f"until {condition}; do sleep 1; done"


@dataclass(frozen=True)
class Shell:
    """The commands of one deployment; paths printed as ``shown`` prints them."""

    deployment: Deployment
    hosts: Mapping[str, HostFacts]
    shown: Shown

    @property
    def config(self) -> FailoverConfig:
        """The deployment's configuration."""
        return self.deployment.config

    def site(self, name: str) -> SiteConfig:
        """A site or a spare (a rebuild's steps name the spare it makes)."""
        if name in self.config.spares:
            return self.config.spares[name]
        return self.config.site(name)

    def path(self, path: Path | str | None) -> str | None:
        """A configured file as the runbook prints it (None stays None)."""
        return None if path is None else self.shown(path)

    # -- PostgreSQL -----------------------------------------------------------------

    def conninfo(self, site: str, dbname: str | None = None, *, passfile: str | None = None) \
            -> str:
        """libpq's connection string for a site's server as the engine's superuser, quoted."""
        db = self.site(site).database
        parts = {"host": db.host, "port": str(db.port), "user": db.user,
                 "dbname": dbname or db.dbname, "connect_timeout": CONNECT_TIMEOUT}
        passfile = passfile or self.path(db.passfile)
        if passfile:
            parts["passfile"] = passfile
        return shlex.quote(make_conninfo("", **parts))

    def psql(self, site: str, sql: str, dbname: str | None = None) -> str:
        """One statement at a site, its answer unaligned (``-At``): what a check compares."""
        if any(c in sql for c in UNSAFE_IN_DOUBLE_QUOTES):
            raise ValueError(f"this statement needs a here-document, not -c: {sql}")
        return f'psql -X -At {self.conninfo(site, dbname)} -c "{sql}"'

    def psql_script(self, site: str, script: str) -> str:
        """A script at a site, fed verbatim (no shell expansion), stopping at the first error."""
        return (f"psql -X -v ON_ERROR_STOP=1 {self.conninfo(site)} <<'SQL'\n"
                f"{script.strip()}\nSQL")

    def wait_sql(self, site: str, sql: str, answer: str) -> str:
        """Wait until a statement at a site answers ``answer``."""
        return until(f'[ "$({self.psql(site, sql)})" = {answer} ]')

    def host(self, site: str) -> HostFacts:
        """The facts of a site's host."""
        return self.hosts[site]

    # -- objects -------------------------------------------------------------------

    def store(self, site: str) -> ObjectStoreConfig:
        """A site's object store."""
        return self.site(site).objects

    def s3(self, site: str) -> str:
        """``aws`` pointed at a site's object store."""
        store = self.store(site)
        return aws_cli(store.region, store.endpoint_url, self.path(store.credentials_file))

    def sync_objects(self, source: str, target: str) -> str:
        """Copy a bucket to another site's through a local folder (the stores differ)."""
        folder = f'"{SCRATCH}/failover-objects-{source}"'
        return "\n".join([
            f"mkdir -p {folder}",
            f"{self.s3(source)} s3 sync s3://{self.store(source).bucket} {folder}",
            f"{self.s3(target)} s3 sync {folder} s3://{self.store(target).bucket}",
        ])

    def count_objects(self, site: str) -> str:
        """The number and size of the objects in a site's bucket."""
        return (f"{self.s3(site)} s3 ls s3://{self.store(site).bucket} --recursive --summarize"
                " | tail -n 2")

    # -- apps ----------------------------------------------------------------------

    def readyz(self, site: str) -> str:
        """A site's app's own readiness answer."""
        return f"curl -sS {self.site(site).app_url}/readyz"

    def wait_writable(self, site: str) -> str:
        """Wait until a site's app says it takes writes."""
        return until(f"curl -fsS {self.site(site).app_url}/readyz | jq -e .writable "
                     ">/dev/null")

    # -- DNS -----------------------------------------------------------------------

    def records(self, site: str, ttl: int | None = None) -> Sequence[Record]:
        """The records that follow the primary, pointing at ``site`` (a site or a spare)."""
        if site in self.config.spares:
            return Deployment(self.config.with_spare(site), "").records(site, ttl)
        return self.deployment.records(site, ttl)
