"""An agent of a site whose PostgreSQL does not run, and the ways tests reach its API.

The unit layer starts no server process: the agent is built (its journal,
its lease) but never ``begin()``s, so its children never start; its API is
served in process, on loopback, by a thread (the fixtures in conftest.py). A
port nothing listens on stands for the database, so every handler that needs
none (the lease, status) answers as it would on a host whose server is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from failover.agent.agent import Agent
from failover.agent.client import AgentClient
from failover.agent.config import AgentConfig, PostgresSpec
from failover.secretfiles import write_private
from tests.conftest import free_port

SECRET = b"agent-test-secret-0f3c9a"
SITE = "aws"


def agent_config(home: Path, listen_port: int) -> AgentConfig:
    """An agent's config under ``home``: a secret file, a state dir, a database that is down."""
    home.mkdir(parents=True, exist_ok=True)
    secret_file = home / "agent.secret"
    write_private(secret_file, SECRET.decode() + "\n")
    passfile = home / "pgpass"
    write_private(passfile, "*:*:*:postgres:pw\n*:*:*:replicator:pw\n")
    return AgentConfig(
        site=SITE, listen=f"127.0.0.1:{listen_port}", secret_file=secret_file,
        state_dir=home / "state",
        postgres=PostgresSpec(bindir=home / "bin", data_dir=home / "pgdata",
                              address="127.0.0.1", port=free_port(), os_user=None,
                              passfile=passfile, log=home / "postgres.log"),
    )


@dataclass(frozen=True)
class Served:
    """An agent whose API answers on loopback from a thread."""

    agent: Agent
    url: str

    def client(self, secret: bytes = SECRET) -> AgentClient:
        """A client of it."""
        return AgentClient(self.url, secret, site=SITE, timeout=5)
