"""What the machine offers the lab: server binaries, service users, free ports."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.lab.exceptions import MissingBinary, PortTaken

MIN_POSTGRES = 15
DEBIAN_PACKAGES = "bind9 postgresql etcd-server"


def install_command() -> str:
    """The exact command that installs the servers the lab needs."""
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {DEBIAN_PACKAGES}"


def postgres_bindir() -> Path:
    """The newest PostgreSQL (>= 15) bin directory, or $FAILOVER_PG_BINDIR."""
    override = os.environ.get("FAILOVER_PG_BINDIR")
    candidates = [Path(override)] if override else sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    for bindir in candidates:
        version_ok = override or int(bindir.parent.name) >= MIN_POSTGRES
        if version_ok and all((bindir / b).exists() for b in ("postgres", "initdb")):
            return bindir
    raise MissingBinary(
        f"PostgreSQL >= {MIN_POSTGRES} server binaries not found in /usr/lib/postgresql/*/bin "
        f"(or $FAILOVER_PG_BINDIR); install them: {install_command()}"
    )


def named_binary() -> Path:
    """BIND 9's ``named``."""
    found = shutil.which("named") or next(
        (p for p in ("/usr/sbin/named", "/usr/local/sbin/named") if Path(p).exists()), None
    )
    if found is None:
        raise MissingBinary(f"BIND 9 (named) is not installed; install it: {install_command()}")
    return Path(found)


@dataclass(frozen=True)
class RunAs:
    """Who a server runs as: a service user when we are root, else ourselves.

    PostgreSQL's initdb refuses to run as root, and BIND should not keep root,
    so as root the lab hands them to the ``postgres`` and ``bind`` users.
    """

    user: str | None
    uid: int
    gid: int

    @classmethod
    def service(cls, name: str) -> RunAs:
        """The service user ``name`` when root, otherwise the current user."""
        if os.geteuid() != 0:
            return cls(None, os.getuid(), os.getgid())
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise MissingBinary(
                f"user {name!r} does not exist; it comes with the Debian packages: "
                f"{install_command()}"
            ) from None
        return cls(name, entry.pw_uid, entry.pw_gid)

    @property
    def group(self) -> int | None:
        """The gid to run as (None: our own)."""
        return self.gid if self.user is not None else None

    @property
    def groups(self) -> list[int] | None:
        """Supplementary groups: none of root's for a service user."""
        return [] if self.user is not None else None

    @property
    def owner(self) -> tuple[int, int]:
        """(uid, gid) for chown."""
        return self.uid, self.gid

    def chown_tree(self, path: Path) -> None:
        """Give a directory tree to this user (a no-op when not root)."""
        if self.user is None:
            return
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, self.uid, self.gid)

    def can_enter(self, path: Path) -> bool:
        """Whether this user can reach ``path`` (search permission on it and its parents)."""
        if self.user is None:
            return os.access(path, os.X_OK)
        probe = subprocess.run(
            ["test", "-x", str(path)], user=self.user, group=self.group,
            extra_groups=self.groups, check=False,
        )
        return probe.returncode == 0


def check_free(part: str, address: str, port: int, udp: bool = False) -> None:
    """Raise PortTaken when something already listens on address:port."""
    kinds = [socket.SOCK_STREAM, socket.SOCK_DGRAM] if udp else [socket.SOCK_STREAM]
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                # Servers set SO_REUSEADDR too, so a socket in TIME_WAIT is no obstacle.
                # Not for UDP: there it would let us bind beside a live server.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
                raise PortTaken(
                    f"{part}: {address}:{port}/{proto} is taken ({exc.strerror}); stop what "
                    "listens there or start the lab with another --subnet or --dns-port"
                ) from exc
