"""The cloud-config of a small agent, as a rebuild hands it to the fake Hetzner Cloud API.

Its database is a directory with nothing in it: the agent starts, answers its
API and tries to run PostgreSQL there, which is all the fake's tests need of it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from failover.agent.config import AgentConfig, PostgresSpec, dump_agent_config
from failover.agent.install import render_user_data
from failover.secretfiles import write_private

SITE = "spare"
BINDIR = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class AgentData:
    """A rendered user-data and what it will make."""

    user_data: str
    secret: str
    config_path: Path
    secret_path: Path
    state_dir: Path
    url: str  # where the agent listens


def agent_user_data(root: Path, address: str, agent_port: int, pg_port: int, *,
                    config_path: Path | None = None) -> AgentData:
    """The user-data of an agent of site spare whose files all live under ``root``."""
    home, site_dir = root / "agents" / SITE, root / "sites" / SITE  # as the lab's sites have
    (site_dir / "pgdata").mkdir(parents=True, exist_ok=True)  # empty
    passfile = site_dir / "pgpass"
    write_private(passfile, "*:*:*:postgres:pw\n*:*:*:replicator:pw\n")
    config_path = config_path or home / "agent.yaml"
    secret_path = root / "secrets" / f"agent-{SITE}.secret"
    config = AgentConfig(
        site=SITE, listen=f"{address}:{agent_port}", secret_file=secret_path, state_dir=home,
        postgres=PostgresSpec(bindir=BINDIR, data_dir=site_dir / "pgdata",
                              address=address, port=pg_port, os_user=None, passfile=passfile,
                              log=root / "logs" / f"postgres@{SITE}.log"),
    )
    secret = secrets.token_urlsafe(24)
    user_data = render_user_data(site=SITE, requirement="failover", config_text=dump_agent_config(
        config), secret=secret, config_path=config_path, secret_path=secret_path)
    return AgentData(user_data, secret, config_path, secret_path, home,
                     f"http://{address}:{agent_port}")
