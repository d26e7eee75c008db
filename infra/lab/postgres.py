"""PostgreSQL servers of the lab: a primary made by initdb, standbys by base backup.

Each server runs the ``postgres`` binary in the foreground, so the PID the lab
records is the postmaster itself (no ``pg_ctl`` in between), and stops with
SIGINT, PostgreSQL's fast shutdown. Per-site settings (address, port, socket
dir, cluster_name) go on the command line so that a base backup's copied
configuration serves every site alike; settings the failover engine changes
at run time (synchronous_standby_names, primary_conninfo) stay in files.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from failover.agent.config import PostgresSpec
from failover.agent.pghost import PgHost
from failover.data.postgres import PgEndpoint
from failover.processes import ProcessRecord, spawn
from failover.secretfiles import write_private
from failover.waiting import wait_for
from infra.lab.exceptions import LabError
from infra.lab.layout import APP_DATABASE, APP_USER, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets, pgpass_file
from infra.lab.system import RunAs

REPLICATION_USER = "replicator"

SERVER_SETTINGS = """
# failover lab settings
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '256MB'
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = '1s'
# A standby pings its primary after half of this without a message and gives up
# at the end of it. The default (60 s) lets a standby "stream" from a primary
# that went dark for a minute, and the engine rightly refuses to promote a
# standby that still streams. 3 s is the loopback lab's choice.
wal_receiver_timeout = '3s'
wal_log_hints = on
max_connections = 60
shared_buffers = '32MB'
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
"""

HBA = """# failover lab: passwords only, loopback only
host    all          all          127.0.0.0/8  scram-sha-256
host    replication  replicator   127.0.0.0/8  scram-sha-256
"""


class LabPostgres:
    """Makes, starts and queries the lab's PostgreSQL servers."""

    def __init__(
        self, layout: LabLayout, paths: LabPaths, secrets: LabSecrets, bindir: Path, run_as: RunAs
    ) -> None:
        self.layout = layout
        self.paths = paths
        self.secrets = secrets
        self.bindir = bindir
        self.run_as = run_as

    def endpoint(self, site: str, user: str = "postgres", dbname: str = "postgres") -> PgEndpoint:
        """How to reach a site's server (passwords come from the lab's pgpass)."""
        return PgEndpoint(
            self.layout.address(site), self.layout.postgres_port, user, dbname,
            passfile=str(pgpass_file(self.paths)),
        )

    def _run(
        self, site: str, argv: list[str], env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run a tool as the server's user, output to the site's log; returns that output."""
        log = self.paths.log(f"postgres@{site}")
        with open(log, "ab") as out:
            start = out.tell()
            try:
                done = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    user=self.run_as.user, group=self.run_as.group,
                    extra_groups=self.run_as.groups, env=env, check=False, timeout=timeout,
                )
            except subprocess.TimeoutExpired:  # run() has killed it
                raise LabError(
                    f"{Path(argv[0]).name} for site {site} did not finish in {timeout:g}s"
                ) from None
        with open(log, "rb") as written:
            written.seek(start)
            output = written.read().decode(errors="replace")
        if done.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-3:])
            raise LabError(f"{Path(argv[0]).name} for site {site} failed: {tail}")
        return output

    def _site_dir(self, site: str) -> None:
        site_dir = self.paths.site(site)
        site_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.run_as.user is not None:
            os.chown(site_dir, *self.run_as.owner)

    def initdb(self, site: str) -> None:
        """Create a primary's data directory (with checksums, so pg_rewind works)."""
        self._site_dir(site)
        pwfile = self.paths.site(site) / "initdb.pw"
        write_private(pwfile, self.secrets.postgres_password + "\n", self.run_as.owner)
        try:
            self._run(site, [
                str(self.bindir / "initdb"), "-D", str(self.paths.pgdata(site)),
                "--data-checksums", "--username=postgres", f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        pgdata = self.paths.pgdata(site)
        with open(pgdata / "postgresql.conf", "a") as conf:
            conf.write(SERVER_SETTINGS)
        (pgdata / "pg_hba.conf").write_text(HBA)

    def spec(self, site: str) -> PostgresSpec:
        """A site's server as its agent runs it."""
        return PostgresSpec(
            bindir=self.bindir, data_dir=self.paths.pgdata(site),
            address=self.layout.address(site), port=self.layout.postgres_port,
            os_user=self.run_as.user, passfile=pgpass_file(self.paths),
            # TCP only: a socket path under a deep state dir would exceed 107 bytes.
            settings={"unix_socket_directories": "", "cluster_name": site},
            log=self.paths.log(f"postgres@{site}"),
        )

    def argv(self, site: str) -> list[str]:
        """The command line of a site's server."""
        return PgHost(self.spec(site)).argv()

    def start(self, site: str) -> ProcessRecord:
        """Start a site's server (primary or standby, as its data dir says)."""
        return spawn(
            f"postgres@{site}", self.argv(site), log=self.paths.log(f"postgres@{site}"),
            user=self.run_as.user, group=self.run_as.group, stop_signal=signal.SIGINT,
        )

    def wait_ready(self, site: str, timeout: float = 30.0) -> None:
        """Wait until the server accepts connections."""
        def ready() -> bool:
            with self.endpoint(site).connect(timeout=1) as conn:
                return conn.execute("SELECT 1").fetchone() is not None

        # Refused, or "the database system is starting up": both OperationalError.
        wait_for(ready, timeout=timeout, what=f"postgres@{site} to accept connections",
                 retry_on=psycopg.OperationalError)

    def bootstrap(self, site: str) -> None:
        """Create the replication and app roles and the app's database."""
        with self.endpoint(site).connect() as conn:
            # Were a statement to fail, PostgreSQL would log its text, password included.
            conn.execute("SET log_min_error_statement = panic")
            for role, password, extra in (
                (REPLICATION_USER, self.secrets.replication_password, "REPLICATION"),
                (APP_USER, self.secrets.app_password, ""),
            ):
                conn.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN {} PASSWORD {}").format(
                        sql.Identifier(role), sql.SQL(extra), sql.Literal(password)
                    )
                )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(APP_DATABASE), sql.Identifier(APP_USER)
                )
            )

    def base_backup(self, site: str, source: str, timeout: float = 120.0) -> None:
        """Make ``site`` a streaming standby of ``source`` (pg_basebackup -R, as an agent does)."""
        self._site_dir(site)
        PgHost(self.spec(site)).base_backup(self.layout.address(source),
                                            self.layout.postgres_port, timeout)

    def streams(self, primary: str, standby: str) -> bool:
        """Whether ``primary`` sees ``standby`` streaming from it (psycopg.Error if unreachable)."""
        with self.endpoint(primary).connect(timeout=1) as conn:
            row = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s",
                (standby,),
            ).fetchone()
        return row is not None and row[0] == "streaming"

    def wait_streaming(self, primary: str, standby: str, timeout: float = 30.0) -> None:
        """Wait until ``standby`` streams from ``primary``."""
        wait_for(lambda: self.streams(primary, standby), timeout=timeout,
                 what=f"postgres@{standby} to stream from {primary}",
                 retry_on=psycopg.OperationalError)
