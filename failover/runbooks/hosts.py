"""What a command run on a site's host needs: where its data lives, and how to take the server
from its agent and hand it back.

The agent runs the host's PostgreSQL and starts it again whenever it stops,
so a manual step that needs the server stopped (pg_rewind, a restore) first
stops the agent from doing so. On a real host that is the agent's systemd
unit: stopping it stops PostgreSQL too (a fast shutdown), starting it starts
PostgreSQL as its data directory says (a standby once ``standby.signal`` is
there). The lab has no systemd: there, the agent is frozen (SIGSTOP), so
that it neither starts the server again nor loses its place in the lab's
records, and thawed (SIGCONT) to hand the server back; its supervisor then
starts it within a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from failover.agent.install import DEFAULT_CONFIG_PATH
from failover.agent.supervisor import CHILDREN_FILE
from failover.config import FailoverConfig
from infra.lab.agents import agent_dir
from infra.lab.paths import LabPaths
from infra.lab.secrets import pgpass_file

Shown = Callable[[Path | str], str]  # a local path as the runbook prints it

# As the stacks install a host (infra/components/agent.py, which needs Pulumi to import):
# the agent's config names them (postgres.data_dir, .bindir, .passfile).
HOST_DATA_DIR = "/var/lib/postgresql/15/failover"
HOST_BINDIR = "/usr/lib/postgresql/15/bin"
HOST_PASSFILE = str(DEFAULT_CONFIG_PATH.parent / "pgpass")
AGENT_UNIT = "failover-agent"
# The lab's servers run the newest PostgreSQL installed (infra/lab/system.py), or
# $FAILOVER_PG_BINDIR: the same choice, made by the shell that runs the command.
LAB_BINDIR = '${FAILOVER_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}'


@dataclass(frozen=True)
class HostFacts:
    """A site's host, as commands run on it see it."""

    where: str  # how to get a shell there
    pgdata: str
    pgbin: str
    os_user: str  # the server's OS user: its files are its own
    passfile: str  # pgpass on the host, with the superuser's and replication user's passwords
    superuser: str
    replication_user: str
    hold: tuple[str, ...]  # stop the server and keep the agent from starting it again
    release: tuple[str, ...]  # hand the server back to the agent, which starts it

    def setup(self) -> list[str]:
        """The lines that name the host's data directory and tools, for the lines after them."""
        return [f'PGDATA="{self.pgdata}"', f'PGBIN="{self.pgbin}"']


def real_hosts(config: FailoverConfig) -> dict[str, HostFacts]:
    """Every site's host as the stacks install one: a systemd unit runs the agent."""
    out = {}
    for name, site in {**config.sites, **config.spares}.items():
        out[name] = HostFacts(
            where=f"ssh root@{site.address} (paths as in the agent's {DEFAULT_CONFIG_PATH})",
            pgdata=HOST_DATA_DIR, pgbin=HOST_BINDIR, os_user="postgres",
            passfile=HOST_PASSFILE, superuser=site.database.user,
            replication_user="replicator",
            hold=(f"systemctl stop {AGENT_UNIT}   # it stops PostgreSQL (a fast shutdown) "
                  "and the app",),
            release=(f"systemctl start {AGENT_UNIT}   # it starts PostgreSQL as its data "
                     "directory says, and the app",),
        )
    return out


def lab_hosts(paths: LabPaths, config: FailoverConfig, shown: Shown) -> dict[str, HostFacts]:
    """Every site of a lab: one machine, the agents' processes instead of systemd units."""
    out = {}
    for name, site in {**config.sites, **config.spares}.items():
        children = shown(agent_dir(paths, name) / CHILDREN_FILE)
        out[name] = HostFacts(
            where="this machine, as root (the lab runs every site here)",
            pgdata=shown(paths.pgdata(name)), pgbin=LAB_BINDIR, os_user="postgres",
            passfile=shown(pgpass_file(paths)), superuser=site.database.user,
            replication_user="replicator",
            hold=(f"AGENT_PID=$(jq -r .agent_pid {children})",
                  f'kill -STOP "$AGENT_PID"   # the lab\'s stand-in for systemctl stop '
                  f"{AGENT_UNIT}: it no longer starts the server",
                  'if [ -f "$PGDATA/postmaster.pid" ]; then runuser -u postgres -- '
                  '"$PGBIN/pg_ctl" stop -D "$PGDATA" -m fast -w; fi'),
            release=('kill -CONT "$AGENT_PID"   # its supervisor starts the server again, as '
                     "its data directory says",),
        )
    return out
