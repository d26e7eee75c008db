"""etcd: one member at each site, the cluster on which the controllers elect their leader.

Debian's etcd-server (3.4). Each member listens for clients on its site's
address at ``etcd_port`` and for its peers at ``etcd_peer_port``; the three
are bootstrapped together (``--initial-cluster``) with a token of this lab's
own, so that no member of another lab, or of an earlier one here, can join.
Their data lives in the lab's ``etcd`` directory, which ``lab down`` removes. A
member started again over its data (a drill's repair) rejoins the cluster:
etcd ignores the bootstrap flags when its data dir exists.

Kept lean for memory: one Go scheduler thread (GOMAXPROCS=1; the lab is
idle and small), a raft snapshot every 1,000 entries rather than 100,000
(etcd keeps the entries since the last one in memory), history compacted to
the last 1,000 revisions, and a 64 MiB backend quota.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import httpx

from failover.processes import ProcessRecord, spawn
from failover.waiting import wait_for
from infra.lab.exceptions import MissingBinary
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.system import install_command

# The lab's values of watch.cluster: a leader whose site goes dark is replaced within
# its key's TTL (3 s) plus a loop, inside the lab's 15 s RTO with the promote and DNS's
# 5 s TTL after it (Patroni's rule: loop_wait + 2 * retry_timeout <= ttl).
CLUSTER_NAME = "lab"
TTL = 3
LOOP_WAIT = 0.5
RETRY_TIMEOUT = 1.0
# When the dark site's member was raft's leader, the others first elect one (an election
# timeout) and the new leader extends every lease by as much: a 1 s timeout (etcd's
# default) made a dark leader's key outlive it by some 2.3 s. Loopback answers in
# microseconds, so 100 ms heartbeats and 600 ms are still ample (etcd: at least 5 beats).
RAFT = ("--heartbeat-interval", "100", "--election-timeout", "600")
LEAN = ("--snapshot-count", "1000", "--auto-compaction-mode", "revision",
        "--auto-compaction-retention", "1000", "--quota-backend-bytes", str(64 * 2**20))


def binary() -> Path:
    """etcd's server program."""
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        raise MissingBinary(f"etcd is not installed; install it: {install_command()}")
    return Path(found)


def part(site: str) -> str:
    """The lab's name of a site's member, e.g. ``etcd@aws``."""
    return f"etcd@{site}"


def endpoints(layout: LabLayout) -> list[str]:
    """Every member's client URL, one per site (what watch.cluster.endpoints names)."""
    return [layout.etcd_endpoint(site) for site in layout.sites]


def cluster_token(paths: LabPaths, started_at: str) -> str:
    """The token this lab's members bootstrap with: of this state dir and this ``lab up``."""
    digest = hashlib.sha256(f"{paths.root}|{started_at}".encode()).hexdigest()[:16]
    return f"failover-lab-{digest}"


def data_dir(paths: LabPaths, site: str) -> Path:
    """A member's data directory: not in the site's, which a spare's decommission wipes."""
    return paths.root / "etcd" / site


def start(layout: LabLayout, paths: LabPaths, site: str, token: str) -> ProcessRecord:
    """Start a site's member; the first start of the three bootstraps the cluster."""
    data = data_dir(paths, site)
    data.mkdir(mode=0o700, parents=True, exist_ok=True)  # etcd wants its data dir private
    peers = ",".join(f"{s}={layout.etcd_peer_url(s)}" for s in layout.sites)
    argv = [
        str(binary()), "--name", site, "--data-dir", str(data),
        "--listen-client-urls", layout.etcd_endpoint(site),
        "--advertise-client-urls", layout.etcd_endpoint(site),
        "--listen-peer-urls", layout.etcd_peer_url(site),
        "--initial-advertise-peer-urls", layout.etcd_peer_url(site),
        "--initial-cluster", peers, "--initial-cluster-token", token,
        "--initial-cluster-state", "new", "--logger", "zap", *RAFT, *LEAN,
    ]
    # A clean environment: etcd reads any ETCD_* variable as a flag. Its heap is let grow
    # half as much over what it holds before Go collects it (GOGC 100 by default): a few
    # MiB a member, for a little more of the CPU its light load takes.
    return spawn(part(site), argv, log=paths.log(part(site)),
                 env={"GOMAXPROCS": "1", "GOGC": "50"})


def wait_ready(layout: LabLayout, site: str, timeout: float = 20.0) -> None:
    """Wait until a member serves: it has a leader, so a majority of the cluster runs."""
    url = f"{layout.etcd_endpoint(site)}/health"
    wait_for(lambda: httpx.get(url, timeout=1.0).json().get("health") == "true",
             timeout=timeout, what=f"{part(site)} to serve", retry_on=httpx.TransportError)


def member_status(layout: LabLayout, site: str, timeout: float) -> dict[str, Any]:
    """A member's own view: its role (leader or follower), raft term and database size."""
    answer = httpx.post(f"{layout.etcd_endpoint(site)}/v3/maintenance/status", json={},
                        timeout=timeout)
    answer.raise_for_status()
    status: dict[str, Any] = answer.json()
    role = "leader" if status.get("leader") == status["header"]["member_id"] else "follower"
    if not status.get("leader") or status.get("leader") == "0":
        role = "no leader"
    return {"role": role, "raft_term": int(status.get("raftTerm", 0)),
            "db_bytes": int(status.get("dbSize", 0))}
