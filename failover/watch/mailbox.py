"""The notices inbox: poll an IMAP folder, turn providers' letters into notices.

One poll logs in, takes the unread letters (``UNSEEN``), reads each without
marking it (``BODY.PEEK[]``), hands every notice to ``deliver`` and only then
marks the letter ``\\Seen``: a crash in between delivers the letter again next
time, and the notice's stable id makes that harmless. Letters that are not
notices are marked seen too, counted and logged with the reason. Letters are
addressed by UID, which stays valid while other clients read the folder.

The password is read from its 0600 file at every poll (so it may be rotated
without a restart) and is never logged; without TLS it is only ever sent to
a loopback address.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Callable, Collection

from failover.config import MailboxConfig
from failover.exceptions import FailoverError
from failover.logs import log_event
from failover.secretfiles import read_private
from failover.watch.letters import judge_letter
from failover.watch.signals import Notice, NoticeRefused

log = logging.getLogger("failover.watch.mailbox")

TIMEOUT = 10.0  # seconds for connecting and for each answer of the server


class MailboxError(FailoverError):
    """The notices inbox could not be read (unreachable, login refused, no such folder)."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(data: object) -> str:
    """An IMAP answer's words, for a message (imaplib gives bytes or lists of them)."""
    if isinstance(data, list | tuple):
        return " ".join(_text(d) for d in data if d is not None)
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data)


class MailboxPoller:
    """Polls one IMAP folder for providers' termination and suspension letters."""

    def __init__(
        self, config: MailboxConfig, deliver: Callable[[Notice], object],
        providers: Collection[str], clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT,
    ) -> None:
        self.config = config
        self.deliver = deliver
        self.providers = frozenset(providers)
        self.clock = clock
        self.timeout = timeout
        self.delivered = 0  # notices handed to deliver
        self.ignored = 0  # letters read that were not notices
        self.last_error: str | None = None  # the last poll's problem, or None when it worked

    @property
    def where(self) -> str:
        """The mailbox, for messages: imaps://user@host:port/folder."""
        c = self.config
        return f"{'imaps' if c.tls else 'imap'}://{c.user}@{c.host}:{c.port}/{c.folder}"

    def poll_once(self) -> list[Notice]:
        """Read every unread letter once; deliver the notices, mark every letter seen."""
        conn = self._login()
        try:
            return self._read_unseen(conn)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"reading {self.where} failed: {_text(exc.args) or exc}; it "
                               "will be read again at the next poll") from exc
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()  # failing to say goodbye changes nothing

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` seconds until ``stop`` is set; problems are logged, not fatal."""
        while not stop.is_set():
            try:
                self.poll_once()
                self.last_error = None
            except FailoverError as exc:
                self.last_error = str(exc)
                log_event(log, "mailbox.error", mailbox=self.where, error=str(exc))
            except Exception as exc:  # deliver's own failure: keep polling, the letter stays unread
                self.last_error = f"{type(exc).__name__}: {exc}"
                log_event(log, "mailbox.error", mailbox=self.where, error=self.last_error)
            stop.wait(self.config.interval)

    def _login(self) -> imaplib.IMAP4:
        c = self.config
        if not c.tls and not _loopback(c.host):
            raise MailboxError(f"refusing to send the mailbox password in clear to {c.host}: "
                               "set watch.mailbox.tls to true (plain IMAP is for loopback only)")
        password = read_private(c.password_file, "mailbox password file").strip()
        try:
            conn: imaplib.IMAP4 = (
                imaplib.IMAP4_SSL(c.host, c.port, ssl_context=ssl.create_default_context(),
                                  timeout=self.timeout)
                if c.tls else imaplib.IMAP4(c.host, c.port, timeout=self.timeout))
        except ssl.SSLError as exc:
            raise MailboxError(f"no TLS with the mailbox at {c.host}:{c.port}: {exc.reason or exc}"
                               "; check watch.mailbox.tls and port (993 for IMAP over TLS)"
                               ) from exc
        except (OSError, imaplib.IMAP4.error) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise MailboxError(f"cannot reach the mailbox at {c.host}:{c.port}: {why}; check "
                               "watch.mailbox.host and port, and that the server is up") from exc
        try:
            try:
                conn.login(c.user, password)
            except imaplib.IMAP4.abort:
                raise  # the connection broke: not a refusal
            except imaplib.IMAP4.error as exc:
                raise MailboxError(
                    f"the mailbox at {c.host}:{c.port} refused the login of {c.user!r}: "
                    f"{_text(exc.args)}; check watch.mailbox.user and the password in "
                    f"{c.password_file}") from exc
            typ, data = conn.select(_quoted(c.folder))
            if typ != "OK":
                raise MailboxError(f"no folder {c.folder!r} in {self.where}: {_text(data)}; "
                                   "check watch.mailbox.folder")
        except MailboxError:
            conn.shutdown()
            raise
        except (imaplib.IMAP4.error, OSError) as exc:
            conn.shutdown()
            raise MailboxError(f"the mailbox at {c.host}:{c.port} stopped answering while "
                               f"logging in: {_text(exc.args) or exc}; it will be tried again "
                               "at the next poll") from exc
        return conn

    def _read_unseen(self, conn: imaplib.IMAP4) -> list[Notice]:
        typ, data = conn.uid("SEARCH", "UNSEEN")
        if typ != "OK":
            raise MailboxError(f"searching {self.where} failed: {_text(data)}")
        notices = []
        for uid in _text(data).split():
            raw = self._fetch(conn, uid)
            if raw is None:
                continue  # deleted by another client since the search
            verdict = judge_letter(raw, providers=self.providers, now=self.clock())
            notice = verdict.notice
            if notice is None:
                self.ignored += 1
                log_event(log, "mailbox.ignored", message_id=verdict.message_id,
                          sender=verdict.sender, subject=verdict.subject, why=verdict.why)
            else:
                try:
                    self.deliver(notice)  # if this raises otherwise, the letter stays unread
                except NoticeRefused as exc:  # a deadline long past: read again, it stays so
                    self.ignored += 1
                    log_event(log, "mailbox.refused", message_id=verdict.message_id,
                              sender=verdict.sender, subject=verdict.subject, why=str(exc))
                else:
                    self.delivered += 1
                    notices.append(notice)
                    log_event(log, "mailbox.notice", id=notice.id, provider=notice.provider,
                              deadline=round(notice.deadline, 3),
                              message_id=verdict.message_id, why=verdict.why)
            typ, data = conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)")
            if typ != "OK":
                raise MailboxError(f"marking a letter seen in {self.where} failed: "
                                   f"{_text(data)}")
        return notices

    def _fetch(self, conn: imaplib.IMAP4, uid: str) -> bytes | None:
        typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
        if typ != "OK":
            raise MailboxError(f"fetching a letter from {self.where} failed: {_text(data)}")
        for item in data:
            # imaplib gives (b'1 (UID 7 BODY[] {123}', b'<the letter>') for a literal.
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        return None


def _quoted(folder: str) -> str:
    """A folder name as an IMAP quoted string (names may hold spaces)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
