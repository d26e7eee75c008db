"""The host's PostgreSQL server as its agent sees it: files, tools and a local connection.

The server runs the ``postgres`` binary in the foreground as the agent's
child, with its address and port on the command line, so a base backup's
copied configuration serves any host. The tools (pg_rewind, pg_basebackup)
run as the server's OS user with an argv list (never a shell string) and get
passwords in their environment, never on a command line.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from failover.agent.config import PostgresSpec
from failover.data.fencing import UNFENCED_SUFFIX
from failover.data.hba import fenced_hba, is_fence
from failover.data.postgres import PgEndpoint
from failover.exceptions import ProviderError
from failover.secretfiles import read_private, write_private
from failover.waiting import wait_for

PROVIDER = "agent"
# Lines of postgresql.auto.conf that configure_standby replaces or drops.
_STANDBY_REPLACED = frozenset({"primary_conninfo", "synchronous_standby_names",
                               "synchronous_commit"})


def _setting_name(line: str) -> str | None:
    """The parameter a configuration line sets (lower case), None for comments."""
    match = re.match(r"\s*([A-Za-z_][\w.]*)\s*=?", line)
    return match.group(1).lower() if match else None


def conf_quote(value: str) -> str:
    """A string as a postgresql.conf value (quotes and backslashes doubled, as ALTER SYSTEM)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def pgpass_password(passfile: Path, user: str) -> str:
    """The password of ``user`` in a pgpass file (the first line that names the user)."""
    for line in read_private(passfile, "pgpass file").splitlines():
        fields = re.split(r"(?<!\\):", line)
        if len(fields) == 5 and fields[3] == user:
            return fields[4].replace("\\:", ":").replace("\\\\", "\\")
    raise ProviderError(f"{passfile} has no password for {user}", provider=PROVIDER,
                        code="no-password")


class PgHost:
    """Makes, configures and asks the one PostgreSQL server of this host."""

    def __init__(self, spec: PostgresSpec, lock_file: Path | None = None) -> None:
        self.spec = spec
        self.lock_file = lock_file  # see rewriting(); None: no lock (the lab's own copies)
        self._held: tuple[int, ...] = ()  # the lock's descriptor while rewriting

    @property
    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) of the server's OS user; None when it runs as the agent's user."""
        if self.spec.os_user is None:
            return None
        entry = pwd.getpwnam(self.spec.os_user)
        return entry.pw_uid, entry.pw_gid

    def argv(self) -> list[str]:
        """The server's command line."""
        settings = {"listen_addresses": self.spec.address, "port": str(self.spec.port),
                    **self.spec.settings}
        out = [str(self.spec.bindir / "postgres"), "-D", str(self.spec.data_dir)]
        for name, value in settings.items():
            out += ["-c", f"{name}={value}"]
        return out

    def endpoint(self) -> PgEndpoint:
        """How the agent reaches its own server (as the superuser)."""
        return PgEndpoint(self.spec.address, self.spec.port, self.spec.superuser,
                          "postgres", passfile=str(self.spec.passfile))

    def connect(self, timeout: float = 3.0) -> psycopg.Connection[Any]:
        """An autocommit superuser connection to the local server."""
        return self.endpoint().connect(timeout=timeout)

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server accepts connections."""
        def ready() -> bool:
            with self.connect(timeout=1) as conn:
                return conn.execute("SELECT 1").fetchone() is not None

        wait_for(ready, timeout=timeout, what="postgres to accept connections",
                 retry_on=psycopg.OperationalError)

    # -- files ---------------------------------------------------------------------

    @property
    def hba_path(self) -> Path:
        """The server's pg_hba.conf (in its data dir, as initdb and a base backup leave it)."""
        return self.spec.data_dir / "pg_hba.conf"

    def hba(self) -> str | None:
        """pg_hba.conf as on disk; None when there is none (no data dir yet)."""
        try:
            return self.hba_path.read_text()
        except FileNotFoundError:
            return None

    def write_hba(self, text: str) -> None:
        """Replace pg_hba.conf (read at start and on reload)."""
        write_private(self.hba_path, text, self.owner)

    @property
    def sidecar(self) -> Path:
        """Where a fence keeps the original pg_hba.conf (``data.fencing``'s sidecar)."""
        return Path(str(self.hba_path) + UNFENCED_SUFFIX)

    def unfenced_hba(self) -> str:
        """The original pg_hba.conf a fence set aside, never read through a link.

        Not held to 0600 as a secret is: the engine's fence writes it over SQL,
        and PostgreSQL's lo_export makes every file it writes 0644.
        """
        fd = os.open(self.sidecar, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8", errors="surrogateescape") as file:
            return file.read()

    def is_standby_dir(self) -> bool:
        """Whether the data dir starts as a standby (standby.signal is there)."""
        return (self.spec.data_dir / "standby.signal").exists()

    def has_data(self) -> bool:
        """Whether there is a data dir to start."""
        return (self.spec.data_dir / "PG_VERSION").exists()

    def fence_on_disk(self, note: str) -> bool:
        """Fence the stopped server's files before it starts; False when fenced already.

        The same fence the engine writes over SQL (``data.fencing``): the original
        goes to the sidecar first, then the fenced file takes its place.
        """
        current = self.hba()
        if current is None or is_fence(current):
            return False
        write_private(self.sidecar, current, self.owner)
        self.write_hba(fenced_hba(current, self.spec.superuser, note, str(self.sidecar)))
        return True

    def data_bytes(self) -> int:
        """The data dir's size in bytes (0 when there is none)."""
        total = 0
        for root, _dirs, files in os.walk(self.spec.data_dir):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    continue  # a WAL segment recycled under us
        return total

    def version(self) -> str:
        """What ``postgres --version`` says."""
        done = subprocess.run([str(self.spec.bindir / "postgres"), "--version"],
                              capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip() or done.stderr.strip()

    # -- tools ---------------------------------------------------------------------

    @contextmanager
    def rewriting(self, timeout: float) -> Iterator[None]:
        """Hold the data dir's lock while its files are rewritten (pg_rewind, a base backup).

        Every tool started meanwhile inherits the lock's open file, so a tool that
        outlives its agent (killed in the middle of a rejoin) holds the lock until it
        exits: the next agent waits for it rather than rewrite the same files beside it.
        """
        if self.lock_file is None:
            yield
            return
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            wait_for(lambda: _try_lock(fd), timeout=timeout, retry_on=(),
                     what="a pg_rewind or base backup an earlier agent left running to end")
            self._held = (fd,)
            yield
        finally:
            self._held = ()
            os.close(fd)  # the lock ends with the last descriptor: ours, or a tool's

    def run_tool(self, argv: list[str], env: dict[str, str], timeout: float) -> str:
        """Run a PostgreSQL tool as the server's user, output to its log; returns the output."""
        name = Path(argv[0]).name
        with open(self.spec.log, "ab") as out:
            start = out.tell()
            try:
                done = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    user=self.spec.os_user, group=None if self.owner is None else self.owner[1],
                    extra_groups=None if self.owner is None else [],
                    env={"PATH": "/usr/bin:/bin", **env}, check=False, timeout=timeout,
                    pass_fds=self._held,
                )
            except subprocess.TimeoutExpired:  # run() has killed it
                raise ProviderError(f"{name} did not finish in {timeout:g}s",
                                    provider=PROVIDER, code="TIMEOUT") from None
        with open(self.spec.log, "rb") as written:
            written.seek(start)
            output = written.read().decode(errors="replace")
        if done.returncode != 0:
            tail = " | ".join(output.strip().splitlines()[-3:])
            raise ProviderError(f"{name} failed: {tail}", provider=PROVIDER, code="tool-failed")
        return output

    def rewind(self, host: str, port: int, timeout: float) -> str:
        """pg_rewind the stopped server to follow the primary at host:port; what it said."""
        conninfo = make_conninfo("", host=host, port=str(port), user=self.spec.superuser,
                                 dbname="postgres", connect_timeout="10")
        return self.run_tool(
            [str(self.spec.bindir / "pg_rewind"), f"--target-pgdata={self.spec.data_dir}",
             f"--source-server={conninfo}"],
            {"PGPASSWORD": pgpass_password(self.spec.passfile, self.spec.superuser)}, timeout)

    def base_backup(self, host: str, port: int, timeout: float) -> None:
        """Copy the primary at host:port into an empty data dir (pg_basebackup -R)."""
        parent = self.spec.data_dir.parent
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.owner is not None:
            os.chown(parent, *self.owner)
        self.run_tool(
            [str(self.spec.bindir / "pg_basebackup"), "-h", host, "-p", str(port),
             "-U", self.spec.replication_user, "-D", str(self.spec.data_dir),
             "-R", "-X", "stream", "-c", "fast", "-w"],
            {"PGPASSWORD": pgpass_password(self.spec.passfile, self.spec.replication_user)},
            timeout)

    def configure_standby(self, host: str, port: int) -> None:
        """Set the stopped server up as a streaming standby of host:port.

        Writes standby.signal and one primary_conninfo (as the replication
        user) into postgresql.auto.conf, dropping any earlier primary_conninfo
        and the synchronous settings a former primary may carry. The file
        holds a password: 0600, owned by the server's user.
        """
        auto = self.spec.data_dir / "postgresql.auto.conf"
        try:
            lines = auto.read_text().splitlines()
        except FileNotFoundError:
            lines = ["# Do not edit this file manually!",
                     "# It will be overwritten by the ALTER SYSTEM command."]
        kept = [line for line in lines if _setting_name(line) not in _STANDBY_REPLACED]
        conninfo = make_conninfo(
            "", host=host, port=str(port), user=self.spec.replication_user,
            password=pgpass_password(self.spec.passfile, self.spec.replication_user),
        )
        kept.append(f"primary_conninfo = {conf_quote(conninfo)}")
        write_private(auto, "\n".join(kept) + "\n", self.owner)
        write_private(self.spec.data_dir / "standby.signal", "", self.owner)


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` if no other open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
