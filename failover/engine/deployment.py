"""A deployment: the configuration and the handles the engine acts through.

``open_deployment`` finds the configuration the way every command does
(``--config``, else the lab in ``--state-dir`` / ``$FAILOVER_STATE_DIR`` /
``.failover/lab``); ``observe`` asks every site's database who it is, all at
once, so that plans are made from what the servers say now.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import httpx

from failover.agent.client import AgentClient, AgentCompute
from failover.agent.protocol import agent_secret
from failover.config import (
    CONFIG_FILE_NAME,
    FailoverConfig,
    default_state_dir,
    load_config,
    missing_files,
)
from failover.data.fencing import is_fenced
from failover.data.postgres import (
    PgEndpoint,
    StandbyLag,
    server_state,
    standby_lags,
    wal_receiver,
)
from failover.dns.base import DnsProvider
from failover.dns.records import Record
from failover.dns.registry import build_providers
from failover.exceptions import ConfigError, StaleToken
from failover.leadertoken import TokenSource, no_token
from failover.lease import LeaseBook, PrimaryLeases
from failover.secretfiles import check_trusted_dir
from failover.state import RunJournal, cluster_client, open_journal

# How long a database server may take to answer the protocol's first message
# before it counts as unreachable for this look. A live server answers in a
# round trip; the emergency path looks three times (plan, check, fence), so
# each second here is three seconds of downtime when a site goes dark.
ASK_TIMEOUT = 1.0
# How long a site the controller has just seen go dark gets to answer instead: a
# live server answers the protocol's first message in a round trip, and each look
# at a dark site in an emergency is that much more downtime.
DARK_ASK_TIMEOUT = 0.25


class Compute(Protocol):
    """What the engine needs from a site's compute: its database server's process and files."""

    def rejoin_database(
        self, site: str, primary: str, *, hba: str | None = None, timeout: float = 120
    ) -> str:
        """Make ``site`` a streaming standby of ``primary``; say how (rewound, rebuilt...)."""
        ...


@dataclass(frozen=True)
class SiteView:
    """What one site's database said when asked (or why it could not be asked)."""

    name: str
    role: str | None = None  # primary | standby | None when unreachable
    lsn: str | None = None
    upstream: str | None = None  # for a standby: the site it streams from, if any
    standbys: tuple[StandbyLag, ...] = ()
    fenced: bool = False  # a primary whose pg_hba lets only replication and us in
    error: str | None = None

    @property
    def reachable(self) -> bool:
        """Whether the server answered."""
        return self.error is None


@dataclass(frozen=True)
class Topology:
    """Every site's view, taken at one moment."""

    sites: dict[str, SiteView] = field(default_factory=dict)

    @property
    def primaries(self) -> list[str]:
        """The sites whose servers are primary and take writes (not fenced)."""
        return [s.name for s in self.sites.values() if s.role == "primary" and not s.fenced]

    @property
    def fenced(self) -> list[str]:
        """The primaries that are fenced: they take no writes, only replication."""
        return [s.name for s in self.sites.values() if s.role == "primary" and s.fenced]


@dataclass(frozen=True)
class Readiness:
    """A site's app as its own /readyz reports it."""

    ready: bool
    detail: str
    body: dict[str, Any] = field(default_factory=dict)


def _fenced(conn: Any) -> bool:
    # Reading pg_hba.conf needs a superuser; not knowing counts as not fenced, which
    # errs toward "two primaries" warnings rather than away from them.
    try:
        return is_fenced(conn)
    except Exception:
        return False


class Deployment:
    """The configuration plus the providers, endpoints and journal built from it."""

    def __init__(self, config: FailoverConfig, source: str) -> None:
        self.config = config
        self.source = source  # where the configuration came from, for messages
        self._agents: dict[str, AgentClient] = {}
        self._agents_lock = threading.Lock()
        self._dark: dict[str, float] = {}  # site -> time.monotonic() until it counts as dark
        self._token: TokenSource = no_token

    def use_token(self, source: TokenSource) -> None:
        """Carry ``source``'s fencing token from now on (a controller that leads), in every
        request to an agent and every write to the journal, clients made before included."""
        self._token = source

    def fencing_token(self) -> int | None:
        """The token requests and journal writes carry now (None: not an elected leader's)."""
        return self._token()

    def assert_leading(self) -> None:
        """Raise StaleToken unless etcd's leader key is still the one our token is of.

        Asked before each step of a leader's run: a leader deposed while a step
        waited (its process frozen, its site dark) does nothing of the next, even
        where no token can be checked (a DNS provider, SQL sent to a database).
        Moves by hand carry no token and are not asked.
        """
        token = self.fencing_token()
        cluster = self.config.watch.cluster
        if token is None or cluster is None or self.config.local_state:
            return
        from failover.cluster.election import LEADER_KEY  # etcd's client: a cluster's only

        entry = cluster_client(cluster).get(LEADER_KEY)
        if entry is None or entry.create_revision != token:
            raise StaleToken(token, token if entry is None else entry.create_revision,
                             "etcd's leader key", why=None if entry is not None else (
                                 f"the leader key of token {token} is gone: this controller "
                                 "no longer leads; nothing more is done"))

    def endpoint(self, site: str) -> PgEndpoint:
        """How the engine reaches a site's database (as a superuser)."""
        db = self.config.site(site).database
        return PgEndpoint(
            db.host, db.port, db.user, db.dbname,
            passfile=str(db.passfile) if db.passfile else None,
        )

    def app_endpoint(self, site: str) -> PgEndpoint:
        """The app's database at a site, as the engine's user: where writes are looked for."""
        return replace(self.endpoint(site), dbname=self.config.site(site).database.app_dbname)

    def application_name(self, site: str) -> str:
        """The name a site's server streams under as a standby."""
        return self.config.site(site).database.application_name or site

    @cached_property
    def dns_providers(self) -> list[DnsProvider]:
        """Every configured DNS provider, in the file's order."""
        return build_providers(self.config.dns_providers)

    def records(self, site: str, ttl: int | None = None) -> tuple[Record, ...]:
        """The records that follow the primary, pointing at ``site``."""
        zone = self.config.dns.zone
        address = str(self.config.site(site).address)
        return tuple(
            Record(zone if r.name == "@" else f"{r.name}.{zone}", r.type,
                   r.ttl if ttl is None else ttl, (address,))
            for r in self.config.dns.records
        )

    @property
    def normal_ttl(self) -> int:
        """The longest TTL the records normally carry: how long caches may hold them."""
        return max(r.ttl for r in self.config.dns.records)

    def agent(self, site: str) -> AgentClient | None:
        """A client of the site's agent, or None when the configuration names none."""
        spec = self.config.site(site).compute
        if spec is None:
            return None
        with self._agents_lock:  # the controller's threads share the clients
            if site not in self._agents:
                self._agents[site] = AgentClient(spec.url, agent_secret(spec.secret_file),
                                                 site=site, timeout=spec.timeout,
                                                 token=self.fencing_token)
            return self._agents[site]

    def compute(self, site: str) -> Compute | None:
        """The site's compute adapter (its agent), or None when the configuration names none."""
        client = self.agent(site)
        return None if client is None else AgentCompute(client, self.endpoint)

    @cached_property
    def lease_book(self) -> LeaseBook:
        """When each site's lease ends at the latest (``leases.sqlite`` beside the journal)."""
        return LeaseBook(self.config.journal.with_name("leases.sqlite"))

    @cached_property
    def primary_leases(self) -> PrimaryLeases:
        """The primary's lease as moves see it: in etcd when the agents hold it there
        (``watch.cluster.agent_leases``), else the controller's lease book."""
        cluster = self.config.watch.cluster
        # Without the cluster (its quorum lost, failover.state) no agent can hold it there.
        if cluster is None or not cluster.agent_leases or self.config.local_state:
            return self.lease_book
        from failover.cluster.etcd import EtcdCluster  # etcd's client only when used
        from failover.cluster.primarylease import EtcdLeases

        return EtcdLeases(EtcdCluster.from_config(cluster), lambda: {
            name: agent for name in self.config.sites if (agent := self.agent(name)) is not None},
            token=self.fencing_token)

    @cached_property
    def journal(self) -> RunJournal:
        """The run journal (in etcd with ``watch.cluster``, else the file)."""
        return open_journal(self.config, token=self.fencing_token)

    def site_of_host(self, host: str) -> str | None:
        """The site whose database or address is ``host``."""
        for name, site in self.config.sites.items():
            if host in (site.database.host, str(site.address)):
                return name
        return None

    def mark_dark(self, site: str, seconds: float) -> None:
        """The controller saw ``site`` go dark: ask it only briefly for ``seconds``."""
        self._dark[site] = time.monotonic() + seconds

    def ask_timeout(self, site: str, timeout: float = ASK_TIMEOUT) -> float:
        """How long to wait for ``site`` to answer: shorter while it is known to be dark."""
        if self._dark.get(site, 0.0) > time.monotonic():
            return min(timeout, DARK_ASK_TIMEOUT)
        return timeout

    def view(self, site: str, timeout: float = ASK_TIMEOUT) -> SiteView:
        """Ask one site's database who it is."""
        timeout = self.ask_timeout(site, timeout)
        try:
            with self.endpoint(site).connect(timeout=timeout) as conn:
                state = server_state(conn)
                if state.role == "primary":
                    return SiteView(site, state.role, state.lsn, fenced=_fenced(conn),
                                    standbys=tuple(standby_lags(conn)))
                receiver = wal_receiver(conn)
                streaming = receiver is not None and receiver.status == "streaming"
                upstream = (self.site_of_host(receiver.sender_host)
                            if streaming and receiver and receiver.sender_host else None)
                return SiteView(site, state.role, state.lsn, upstream=upstream)
        except Exception as exc:  # any failure to ask is an answer: unreachable
            return SiteView(site, error=" ".join(f"{type(exc).__name__}: {exc}".split()))

    def observe(self, timeout: float = ASK_TIMEOUT) -> Topology:
        """Every site's view, asked in parallel."""
        names = list(self.config.sites)
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            views = list(pool.map(lambda s: self.view(s, timeout), names))
        return Topology({v.name: v for v in views})

    def readiness(self, site: str, timeout: float = 3.0) -> Readiness:
        """The site's app's own readiness check: 200 from its /readyz."""
        url = f"{self.config.site(site).app_url}/readyz"
        try:
            response = httpx.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            return Readiness(False, f"{url} did not answer: {type(exc).__name__}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            return Readiness(False, f"{url} answered {response.status_code}", body)
        return Readiness(True, f"{url}: role {body.get('role', '?')}", body)


def open_deployment(config: Path | None, state_dir: Path | None) -> Deployment:
    """The deployment named by ``--config``, else the lab in the state dir.

    Refused with a ConfigError (exit 2): a state dir that is a symlink or that
    others may write to, and a configuration naming files that do not exist.
    """
    if config is not None:
        if state_dir is not None:
            raise ConfigError("give --config or --state-dir, not both")
        path = config
    else:
        root = (state_dir or default_state_dir()).absolute()
        check_trusted_dir(root, "state dir")
        path = root / CONFIG_FILE_NAME
        if not path.exists():
            raise ConfigError(
                f"no configuration: {path} does not exist; start the lab (failover lab up) "
                "or pass --config FILE"
            )
    loaded = load_config(path)
    missing = missing_files(loaded)
    if missing:
        raise ConfigError(f"{path} names what does not exist: {'; '.join(missing)}; create "
                          "it or correct the path")
    return Deployment(loaded, str(path))
