"""A real IMAP server for tests: Debian's dovecot with a private config, on loopback.

Everything lives under one temp dir (config, runtime sockets, state, log,
maildirs, passwd-file); the server runs in the foreground (``dovecot -F``) and
is stopped by its PID. As root (CI), login processes run as ``dovenull`` and
internal ones as ``dovecot`` (the package creates both; ``nobody`` stands in
when they are missing), and mail is stored as ``nobody``, because dovecot
refuses to serve mail as root. As a normal user everything runs as that user.

Dovecot takes about a second to shut down (its master waits for the log
process), so one server serves many tests, each with a mailbox of its own
(``Dovecot.new_mailbox``).
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from failover.secretfiles import write_private
from failover.waiting import wait_for

DOVECOT = "/usr/sbin/dovecot"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
MAILBOXES = 32  # users made at start, one per test that asks


def free_port(host: str) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _system_user(*names: str) -> pwd.struct_passwd:
    """The first of ``names`` that exists on this machine, else nobody."""
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return pwd.getpwnam("nobody")


@dataclass(frozen=True)
class Mailbox:
    """One user's mailbox on the test server."""

    host: str
    port: int
    user: str
    password: str
    password_file: Path  # the password in a 0600 file, as MailboxConfig wants it
    passwd_line: str  # its line in dovecot's passwd-file

    def connect(self) -> imaplib.IMAP4:
        """A logged-in IMAP connection (the caller logs out)."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=5)
        conn.login(self.user, self.password)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver one letter, unread, by IMAP APPEND."""
        conn = self.connect()
        try:
            typ, data = conn.append(folder, "", None, raw)
            assert typ == "OK", (typ, data)
        finally:
            conn.logout()

    def unseen(self, folder: str = "INBOX") -> int:
        """How many letters in ``folder`` are not marked \\Seen."""
        return len(self._search("UNSEEN", folder))

    def count(self, folder: str = "INBOX") -> int:
        """How many letters ``folder`` holds."""
        return len(self._search("ALL", folder))

    def _search(self, criterion: str, folder: str) -> list[bytes]:
        conn = self.connect()
        try:
            conn.select(folder, readonly=True)
            typ, data = conn.search(None, criterion)
            assert typ == "OK", (typ, data)
            found: list[bytes] = data[0].split()
            return found
        finally:
            conn.logout()


class Dovecot:
    """A running dovecot: where it listens, its files, its PID."""

    def __init__(self, root: Path, host: str, port: int, process: subprocess.Popen[bytes],
                 mailboxes: list[Mailbox]):
        self.root = root
        self.host = host
        self.port = port
        self.process = process
        self._lock = threading.Lock()
        self._unused = list(mailboxes)

    @property
    def pid(self) -> int:
        """The master process's PID."""
        return self.process.pid

    @property
    def log_file(self) -> Path:
        """Where dovecot logs."""
        return self.root / "dovecot.log"

    @property
    def passwd(self) -> Path:
        """The passwd-file both passdb and userdb read."""
        return self.root / "passwd"

    def log(self) -> str:
        """What the server wrote to its log so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def new_mailbox(self) -> Mailbox:
        """A fresh, empty mailbox (one of the users made at start)."""
        with self._lock:
            if not self._unused:
                raise RuntimeError(f"all {MAILBOXES} test mailboxes are in use: raise MAILBOXES")
            return self._unused.pop(0)


def _make_mailbox(root: Path, host: str, port: int, number: int) -> Mailbox:
    user = f"notices{number}"
    password = secrets.token_urlsafe(16)
    owner = _mail_owner()
    home = root / "mail" / user
    password_file = root / f"{user}.password"
    write_private(password_file, password + "\n")
    line = f"{user}:{{PLAIN}}{password}:{owner.pw_uid}:{owner.pw_gid}::{home}::\n"
    return Mailbox(host, port, user, password, password_file, line)


def _mail_owner() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def _auth_owner() -> tuple[int, int] | None:
    # Dovecot's auth process reads the passwd-file as its internal user.
    if os.geteuid() != 0:
        return None
    internal = _system_user("dovecot")
    return internal.pw_uid, internal.pw_gid


def _config(root: Path, host: str, port: int) -> str:
    if os.geteuid() == 0:
        login_user = _system_user("dovenull").pw_name
        internal = _system_user("dovecot")
        chroot = ""  # as root the default login chroot works
    else:
        internal = pwd.getpwuid(os.geteuid())
        login_user = internal.pw_name
        chroot = "  chroot =\n"  # only root may chroot
    return f"""# written by tests/failover/watch/dovecot.py
instance_name = failover-test-{port}
base_dir = {root}/run
state_dir = {root}/state
listen = {host}
protocols = imap
ssl = no
# Plain LOGIN is fine here: loopback only, throwaway passwords.
disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests fail logins on purpose: no delay after a failed one.
auth_failure_delay = 0
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_login_user = {login_user}
default_internal_user = {internal.pw_name}
default_internal_group = {grp.getgrgid(internal.pw_gid).gr_name}
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
{chroot}}}
service anvil {{
{chroot}  # No penalty on later logins from an address that failed one (it doubles
  # per failure, up to 15 s): auth finds no penalty socket it may use and skips it.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _greets(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1) as sock:
        greeting = sock.recv(256)
        sock.sendall(b"a LOGOUT\r\n")
        return greeting.startswith(b"* OK")


@contextmanager
def running_dovecot(host: str) -> Iterator[Dovecot]:
    """Start dovecot on ``host`` (a loopback address); stop it by PID whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="failover-test-dovecot-"))
    # Dovecot's own users must enter the dir (as root, mail is stored as nobody).
    root.chmod(0o755)
    mail = root / "mail"
    mail.mkdir()
    owner = _mail_owner()
    os.chown(mail, owner.pw_uid, owner.pw_gid)
    port = free_port(host)
    mailboxes = [_make_mailbox(root, host, port, i) for i in range(MAILBOXES)]
    # Every user exists from the start: dovecot notices a changed passwd-file
    # only now and then (a user added mid-run was refused once in three tries).
    write_private(root / "passwd", "".join(m.passwd_line for m in mailboxes),
                  owner=_auth_owner())
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, host, port))
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    server = Dovecot(root, host, port, process, mailboxes)
    try:
        def started() -> str | None:
            if process.poll() is not None:
                return "exited"
            return "up" if _greets(host, port) else None

        if wait_for(started, timeout=START_TIMEOUT, what=f"dovecot on {host}:{port}",
                    retry_on=OSError) == "exited":  # refused, or no greeting yet
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"dovecot exited with {process.returncode}: "
                               f"{stderr.strip()} {server.log().strip()}")
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        if process.stderr:
            process.stderr.close()
        shutil.rmtree(root, ignore_errors=True)
