"""The lab's site agents: one ``failover agent`` per site, running its PostgreSQL and app.

``lab up`` writes each agent's config (``agents/<site>/agent.yaml``) and a
per-site secret, and starts the agent, which starts the site's server and
app as its children and records them in ``agents/<site>/children.json``. The
lab keeps the agent's PID in ``lab.json`` and reads the children's from
there, so that ``lab status`` shows them and ``lab down`` stops every one by
PID, even when the agent is gone.

With ``LabLayout.agent_leases`` each config also names the lab's etcd
cluster (``cluster_spec``): the primary's agent holds the primary's lease
there itself, and asks its peers (the other database sites' agents, with a
secret they share) to vouch for it while etcd is out of its reach.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from failover.agent.client import AgentClient
from failover.agent.config import AgentConfig, AppSpec, ClusterSpec, dump_agent_config
from failover.agent.protocol import agent_secret
from failover.agent.supervisor import read_children
from failover.exceptions import ProviderError
from failover.processes import ProcessRecord, spawn
from failover.secretfiles import write_private
from failover.waiting import wait_for
from infra.lab import etcd, refapp, stores
from infra.lab.layout import DATABASE_SITES, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.postgres import LabPostgres
from infra.lab.prefork import Part

# The primary's lease in etcd: renewed every 5/3 s; a cycle that finds etcd frozen spends
# 0.6 s on it and 1 s on the peers' round, and still ends a second before the lease would.
LEASE_TTL = 5
LEASE_RETRY_TIMEOUT = 0.6
FAILSAFE_TIMEOUT = 1.0


def agent_dir(paths: LabPaths, site: str) -> Path:
    """A site agent's own directory: its config, journal, lease and children files."""
    return paths.root / "agents" / site


def secret_file(paths: LabPaths, site: str) -> Path:
    """The secret that signs requests to a site's agent."""
    return paths.secrets / f"agent-{site}.secret"


def agent_url(layout: LabLayout, site: str) -> str:
    """Where a site's agent listens."""
    return f"http://{layout.address(site)}:{layout.agent_port}"


def peer_secret_file(paths: LabPaths) -> Path:
    """The secret the agents share for failsafe rounds (not the controller's)."""
    return paths.secrets / "agents-failsafe.secret"


def cluster_spec(layout: LabLayout, paths: LabPaths, site: str) -> ClusterSpec:
    """A site agent's ``cluster`` section: the lab's etcd, its lease's times, its peers."""
    if not peer_secret_file(paths).exists():
        write_private(peer_secret_file(paths), secrets.token_urlsafe(32) + "\n")
    return ClusterSpec(
        endpoints=etcd.endpoints(layout), name=etcd.CLUSTER_NAME, ttl=LEASE_TTL,
        retry_timeout=LEASE_RETRY_TIMEOUT, failsafe_timeout=FAILSAFE_TIMEOUT,
        peers={other: agent_url(layout, other) for other in DATABASE_SITES if other != site},
        peer_secret_file=peer_secret_file(paths))


def spare_template(paths: LabPaths, site: str) -> Path:
    """A spare's agent config as the rebuild sends it in the new host's user-data."""
    return paths.root / "spares" / site / "agent.yaml"


def write_agent(layout: LabLayout, paths: LabPaths, pg: LabPostgres, site: str, *,
                spare: bool = False) -> Path:
    """Write the site agent's secret and config; returns the config's path.

    A spare's config is a template kept apart (``spare_template``): its host
    does not exist until a rebuild makes it, and gets the config then.
    """
    write_private(secret_file(paths, site), secrets.token_urlsafe(32) + "\n")
    home = agent_dir(paths, site)
    if not spare:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = refapp.app_settings(layout, paths, site)
    config = AgentConfig(
        site=site, listen=f"{layout.address(site)}:{layout.agent_port}",
        secret_file=secret_file(paths, site), state_dir=home,
        postgres=pg.spec(site),
        app=AppSpec(argv=refapp.argv(layout, site), env=env, log=paths.log(f"app@{site}")),
        provider=site, backup=stores.backup_spec(layout, paths, site),
        objects=stores.objects_spec(layout, paths, site),
        cluster=cluster_spec(layout, paths, site) if layout.agent_leases else None,
    )
    path = spare_template(paths, site) if spare else home / "agent.yaml"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(dump_agent_config(config))
    return path


def server(paths: LabPaths, site: str) -> Part:
    """What a site's agent runs (``python -m failover.agent``), as ``write_agent`` set it up."""
    return Part(f"agent@{site}", "failover.agent",
                ("--config", str(agent_dir(paths, site) / "agent.yaml")),
                str(paths.log(f"agent@{site}")), run="failover.agent.main")


def start(layout: LabLayout, paths: LabPaths, site: str) -> ProcessRecord:
    """Start a site's agent (it starts the site's server and app), as ``write_agent`` set up."""
    return spawn(f"agent@{site}", server(paths, site).argv, log=paths.log(f"agent@{site}"),
                 env=refapp.clean_env())


def client(layout: LabLayout, paths: LabPaths, site: str) -> AgentClient:
    """A client of a site's agent."""
    return AgentClient(agent_url(layout, site), agent_secret(secret_file(paths, site)), site=site)


def wait_ready(layout: LabLayout, paths: LabPaths, site: str, timeout: float = 30.0, *,
               database: bool = True) -> None:
    """Wait until the agent answers and (with ``database``) its database accepts connections."""
    agent = client(layout, paths, site)

    def ready() -> bool:
        status = agent.status(timeout=1.0)
        return not database or status.get("role") in ("primary", "standby")

    what = f"agent@{site}" + (" and its database" if database else "") + " to answer"
    try:
        wait_for(ready, timeout=timeout, what=what, retry_on=ProviderError)
    finally:
        agent.close()


def children(paths: LabPaths, site: str, parent: str) -> list[ProcessRecord]:
    """The processes a site's agent recorded, marked as its children."""
    return [r.child_of(parent) for r in read_children(agent_dir(paths, site))]
