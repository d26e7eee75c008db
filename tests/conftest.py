"""Shared fixtures: one lab per test session, on its own subnet and DNS port.

The lab is stopped by PID at the end of the session even when tests fail;
``lab down`` itself is tested by a lab of its own (tests/infra/lab).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest

from failover.data.postgres import PgEndpoint
from infra.lab.lab import Lab
from infra.lab.layout import LabLayout
from infra.lab.secrets import LabSecrets, pgpass_file

# Far from the default lab (127.0.x) so that tests never touch a user's lab.
TEST_SUBNET = os.environ.get("FAILOVER_TEST_SUBNET", "127.77")


def free_port() -> int:
    """A port that is free on 127.0.0.1 for both TCP and UDP right now."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def private_tmpdir(prefix: str) -> Path:
    """A temp dir that the postgres and bind users can enter (tests run as root in CI)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class RunningLab:
    """A started lab and the ways tests reach it."""

    lab: Lab
    layout: LabLayout
    secrets: LabSecrets

    def resolve(self, name: str | None = None) -> list[str]:
        """Ask the lab's authoritative server for the app's A record."""
        query = dns.message.make_query(name or self.layout.app_name, "A")
        response = dns.query.udp(
            query, self.layout.dns_address, port=self.layout.dns_port, timeout=2
        )
        return sorted(
            r.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A
            for r in rrset
        )

    def client_via_dns(self) -> httpx.Client:
        """An HTTP client connected to whatever the app's name resolves to."""
        addresses = self.resolve()
        assert addresses, f"{self.layout.app_name} does not resolve"
        return httpx.Client(
            base_url=f"http://{addresses[0]}:{self.layout.app_port}",
            headers={"Host": self.layout.app_name.rstrip(".")},
            timeout=10,
        )

    def endpoint(self, site: str, user: str = "postgres", dbname: str = "postgres") -> PgEndpoint:
        """A site's PostgreSQL server as ``user`` (password from the lab's pgpass)."""
        return PgEndpoint(self.layout.address(site), self.layout.postgres_port, user, dbname,
                          passfile=str(pgpass_file(self.lab.paths)))

    def hba_file(self, site: str) -> Path:
        """A site's pg_hba.conf (tests run as root and may read it directly)."""
        return self.lab.paths.pgdata(site) / "pg_hba.conf"

    def client(self, site: str) -> httpx.Client:
        """An HTTP client for one site's app, by address."""
        return httpx.Client(base_url=self.layout.app_url(site), timeout=10)


@contextmanager
def running_lab(subnet: str, prefix: str = "failover-test-lab-") -> Iterator[RunningLab]:
    """A lab of its own on ``subnet``, stopped by PID on the way out whatever happened."""
    state_dir = private_tmpdir(prefix)
    the_lab = Lab(state_dir)
    layout = LabLayout(subnet=subnet, dns_port=free_port())
    try:
        the_lab.up(layout)
        yield RunningLab(the_lab, layout, LabSecrets.load(the_lab.paths))
    finally:
        the_lab.down()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def lab() -> Iterator[RunningLab]:
    """The session's lab: started once, stopped by PID at the end whatever happened."""
    with running_lab(TEST_SUBNET) as started:
        yield started
