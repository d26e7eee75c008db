"""A site's agent as its stack sets it up: its secret, its config, the cloud-init that
installs it.

The user-data comes from ``failover.agent.install.render_user_data``, the
template (``infra/cloudinit/user-data.yaml``) that ``failover agent install``
and ``failover rebuild`` use too: PostgreSQL 15, the package (the reference app
and the agent) at the stack's one version, the agent's config and secret
(0600), its systemd unit. The secret is random per stack and stays a Pulumi
secret, and so does every user-data that carries it.

The agent and PostgreSQL listen on every address of the host: at AWS the
Elastic IP is not on the host's interface (it is translated to the private
address), and the firewall, not the listen address, is what keeps strangers
out. What the template cannot carry stays with the operator: the PostgreSQL
passwords file and the storage keys the app reads (README, "Deploy to real
clouds").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_random as random

from failover.agent.config import AgentConfig, AppSpec, PostgresSpec, dump_agent_config
from failover.agent.install import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_SECRET_PATH,
    DEFAULT_VENV,
    render_user_data,
)
from infra.components.settings import Ports

ANY_ADDRESS = "0.0.0.0"
STATE_DIR = Path("/var/lib/failover")
LOG_DIR = Path("/var/log/failover")
POSTGRES_BINDIR = Path("/usr/lib/postgresql/15/bin")  # the postgresql-15 the template installs
DEFAULT_DATA_DIR = "/var/lib/postgresql/15/failover"
PASSFILE = DEFAULT_CONFIG_PATH.parent / "pgpass"  # placed by the operator (see the module doc)
OBJECTS_CREDENTIALS = DEFAULT_CONFIG_PATH.parent / "objects.credentials"  # likewise
APP_DATABASE, APP_USER = "social", "app"  # as the lab has them (infra/lab/postgres.py)
SECRET_LENGTH = 48


@dataclass(frozen=True)
class AgentArgs:
    """What a site's agent is told: the site, the version to install, where its data lives."""

    site: str
    provider: str
    requirement: str  # what pip installs: the app's version, the same on every site
    ports: Ports
    objects_endpoint: str  # the site's S3 endpoint (the app's media)
    bucket: str
    region: str
    data_dir: pulumi.Input[str] = DEFAULT_DATA_DIR


def agent_config_text(args: AgentArgs, data_dir: str) -> str:
    """The agent's config for the site's host, checked as the agent will check it."""
    config = AgentConfig(
        site=args.site, listen=f"{ANY_ADDRESS}:{args.ports.agent}",
        secret_file=DEFAULT_SECRET_PATH, state_dir=STATE_DIR, provider=args.provider,
        postgres=PostgresSpec(
            bindir=POSTGRES_BINDIR, data_dir=Path(data_dir), address=ANY_ADDRESS,
            port=args.ports.database, passfile=PASSFILE, log=LOG_DIR / "postgres.log"),
        app=AppSpec(
            argv=[str(DEFAULT_VENV / "bin" / "python"), "-m", "infra.refapp",
                  "--host", ANY_ADDRESS, "--port", str(args.ports.app)],
            env={"FAILOVER_SITE": args.site,
                 "FAILOVER_DATABASE_DSN": f"host=127.0.0.1 port={args.ports.database} "
                                          f"dbname={APP_DATABASE} user={APP_USER}",
                 "FAILOVER_S3_ENDPOINT": args.objects_endpoint,
                 "FAILOVER_S3_BUCKET": args.bucket,
                 "PGPASSFILE": str(PASSFILE),
                 "AWS_SHARED_CREDENTIALS_FILE": str(OBJECTS_CREDENTIALS),
                 "AWS_DEFAULT_REGION": args.region},
            log=LOG_DIR / "app.log"),
    )
    return (f"# The agent of site {args.site}, written by its Pulumi stack (stacks/).\n"
            + dump_agent_config(config))


class SiteAgent(pulumi.ComponentResource):
    """A site's agent: a random secret, its config, and the user-data that installs both."""

    def __init__(self, name: str, args: AgentArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("failover:infra:SiteAgent", name, None, opts)
        password = random.RandomPassword(
            f"{name}-secret", length=SECRET_LENGTH, special=False,
            opts=pulumi.ResourceOptions(parent=self))
        # The provider marks it secret too, but only a real engine honours that.
        self.secret: pulumi.Output[str] = pulumi.Output.secret(password.result)
        self.config_text: pulumi.Output[str] = pulumi.Output.from_input(args.data_dir).apply(
            lambda data_dir: agent_config_text(args, data_dir))
        self.user_data: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(self.config_text, self.secret).apply(
                lambda values: render_user_data(site=args.site, requirement=args.requirement,
                                                config_text=values[0], secret=values[1])))
        self.register_outputs({"config": self.config_text})
