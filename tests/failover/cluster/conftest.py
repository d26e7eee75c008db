"""Three real etcd members on loopback (one per lab site), as the lab starts them.

Only the etcd cluster, not a whole lab: the wrapper and the election need
nothing else. Members are started and stopped by PID (``infra.lab.etcd``),
and every test that kills one starts it again over its data.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from failover.cluster.etcd import EtcdCluster
from failover.processes import ProcessRecord, is_alive, send, stop
from failover.waiting import wait_for
from infra.lab import etcd
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.system import check_free
from tests.conftest import private_tmpdir, starts_servers

# Loopback 127.86.x.y is this directory's (other test modules use other subnets); each
# pytest-xdist worker starts members of its own (a session fixture is one per worker).
_WORKER_SUBNETS = {"gw0": "127.86", "gw1": "127.89", "gw2": "127.80"}
SUBNET = os.environ.get("FAILOVER_CLUSTER_TEST_SUBNET") or _WORKER_SUBNETS.get(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0"), "127.86")


@dataclass
class Members:
    """The running members, by site, and the ways a test reaches or breaks them."""

    layout: LabLayout
    paths: LabPaths
    token: str
    records: dict[str, ProcessRecord]

    def cluster(self, retry_timeout: float = 3.0, first: str | None = None,
                name: str | None = None) -> EtcdCluster:
        """A client of the cluster (``first``: that member tried first), under the keys of
        deployment ``name`` (default: one of its own, out of other tests' way)."""
        urls = etcd.endpoints(self.layout)
        if first is not None:
            urls.sort(key=lambda url: url != self.layout.etcd_endpoint(first))
        return EtcdCluster(urls, name or f"test-{uuid.uuid4().hex[:8]}", retry_timeout)

    def start(self, *sites: str) -> None:
        """Start members (again, over their data) and wait until each serves."""
        for site in sites:
            self.records[site] = etcd.start(self.layout, self.paths, site, self.token)
        for site in sites:
            etcd.wait_ready(self.layout, site, timeout=20)

    def kill(self, *sites: str) -> None:
        """SIGKILL members, as a site that goes dark."""
        for site in sites:
            send(self.records[site], signal.SIGKILL)
        wait_for(lambda: not any(is_alive(self.records[s]) for s in sites), timeout=10,
                 what=f"etcd at {', '.join(sites)} to die", retry_on=())

    def log_tails(self) -> str:
        """The members' last log lines, for a failure."""
        return "\n".join(
            f"--- {site}\n" + "\n".join(
                self.paths.log(etcd.part(site)).read_text(errors="replace").splitlines()[-15:])
            for site in self.layout.sites)


@pytest.fixture(scope="session")
@starts_servers
def members() -> Iterator[Members]:
    """Three etcd members for the session, stopped by PID at the end whatever happened."""
    layout = LabLayout(subnet=SUBNET)
    paths = LabPaths(private_tmpdir("failover-test-etcd-"))
    paths.logs.mkdir(mode=0o700)
    for part, address, port in layout.listeners():
        if part.startswith("etcd@"):
            check_free(part, address, port)
    started = Members(layout, paths, etcd.cluster_token(paths, "tests"), {})
    try:
        started.start(*layout.sites)
        yield started
    finally:
        for record in started.records.values():
            stop(record)
        shutil.rmtree(paths.root, ignore_errors=True)
