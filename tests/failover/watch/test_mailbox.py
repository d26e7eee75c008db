"""The notices inbox, polled on a real IMAP server (dovecot on 127.98.0.1).

Letters are delivered by IMAP APPEND, as a mail server would file them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.config import MailboxConfig
from failover.exceptions import ConfigError
from failover.secretfiles import write_private
from failover.waiting import wait_for
from failover.watch.mailbox import MailboxError, MailboxPoller
from failover.watch.signals import Notice, NoticeRefused
from tests.failover.watch.dovecot import Mailbox
from tests.failover.watch.test_letters import EXPECTED, NOTICES, NOW, PROVIDERS, raw

pytestmark = pytest.mark.lab  # dovecot

UNREACHABLE = "127.98.0.2"  # a port bound there but never listening refuses connections


def config_of(mailbox: Mailbox, **overrides: object) -> MailboxConfig:
    """The MailboxConfig that reads ``mailbox`` over plain IMAP (loopback)."""
    fields: dict[str, object] = {"host": mailbox.host, "port": mailbox.port, "tls": False,
                                 "user": mailbox.user, "password_file": mailbox.password_file,
                                 "interval": 0.05}
    return MailboxConfig.model_validate({**fields, **overrides})


def poller_of(config: MailboxConfig, delivered: list[Notice]) -> MailboxPoller:
    """A poller that keeps what it delivers, on the letters' clock."""
    return MailboxPoller(config, delivered.append, PROVIDERS, clock=lambda: NOW, timeout=5)


def test_every_notice_is_delivered_once_and_every_letter_marked_seen(mailbox: Mailbox) -> None:
    for name in sorted(EXPECTED):
        mailbox.append(raw(name))
    assert mailbox.unseen() == len(EXPECTED)
    delivered: list[Notice] = []
    poller = poller_of(config_of(mailbox), delivered)

    notices = poller.poll_once()

    assert notices == delivered
    by_reference = {n.reference: (n.provider, n.deadline) for n in delivered}
    want = {_message_id(name): expected for name, expected in NOTICES.items()}
    assert by_reference == want
    assert len({n.id for n in delivered}) == len(NOTICES)
    assert all(n.source == "mailbox" for n in delivered)
    assert (poller.delivered, poller.ignored) == (len(NOTICES), len(EXPECTED) - len(NOTICES))
    assert mailbox.unseen() == 0  # the letters that are not notices are marked seen too
    assert mailbox.count() == len(EXPECTED)  # and nothing is deleted

    assert poller.poll_once() == []
    assert len(delivered) == len(NOTICES)


def _message_id(name: str) -> str:
    for line in raw(name).decode().splitlines():
        if line.lower().startswith("message-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} has no Message-ID")


def test_a_letter_stays_unread_when_delivering_its_notice_fails(mailbox: Mailbox) -> None:
    mailbox.append(raw("hetzner-project-suspension.eml"))
    mailbox.append(raw("not-aws-invoice.eml"))

    def refuse(notice: Notice) -> None:
        raise RuntimeError("the controller is busy")

    failing = MailboxPoller(config_of(mailbox), refuse, PROVIDERS, clock=lambda: NOW)
    with pytest.raises(RuntimeError, match="busy"):
        failing.poll_once()
    assert mailbox.unseen() == 2  # the first letter's failure left both unread

    delivered: list[Notice] = []
    assert [n.provider for n in poller_of(config_of(mailbox), delivered).poll_once()] \
        == ["hetzner"]
    assert mailbox.unseen() == 0


def test_a_letter_whose_notice_is_refused_is_read_once_and_counted(mailbox: Mailbox) -> None:
    mailbox.append(raw("aws-account-termination.eml"))

    def refuse(notice: Notice) -> None:
        raise NoticeRefused("past-deadline", "deadline 2020-01-01T00:00:00Z is in the past")

    poller = MailboxPoller(config_of(mailbox), refuse, PROVIDERS, clock=lambda: NOW)
    assert poller.poll_once() == []
    assert (poller.delivered, poller.ignored) == (0, 1)
    # Read again it would be refused again: it is marked seen, not retried for ever.
    assert mailbox.unseen() == 0


def test_a_wrong_password_is_one_line_naming_what_to_check(mailbox: Mailbox,
                                                            tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-password"
    write_private(wrong, "not-the-password\n")
    poller = poller_of(config_of(mailbox, password_file=wrong), [])
    with pytest.raises(MailboxError) as info:
        poller.poll_once()
    message = str(info.value)
    assert "\n" not in message
    assert f"refused the login of {mailbox.user!r}" in message
    assert f"the password in {wrong}" in message
    assert "not-the-password" not in message


def test_a_password_file_others_can_read_is_refused(mailbox: Mailbox, tmp_path: Path) -> None:
    loose = tmp_path / "password"
    loose.write_text(mailbox.password)
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        poller_of(config_of(mailbox, password_file=loose), []).poll_once()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.98.0.2 that is bound but never listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind((UNREACHABLE, 0))
        yield sock.getsockname()[1]


def test_a_mailbox_not_answering_is_one_line(mailbox: Mailbox, closed_port: int) -> None:
    poller = poller_of(config_of(mailbox, host=UNREACHABLE, port=closed_port), [])
    with pytest.raises(MailboxError) as info:
        poller.poll_once()
    assert str(info.value) == (
        f"cannot reach the mailbox at {UNREACHABLE}:{closed_port}: Connection refused; check "
        "watch.mailbox.host and port, and that the server is up")


def test_a_missing_folder_is_named(mailbox: Mailbox) -> None:
    with pytest.raises(MailboxError, match=r"no folder 'Provider Notices' in imap://"):
        poller_of(config_of(mailbox, folder="Provider Notices"), []).poll_once()


def test_plain_imap_is_refused_beyond_loopback(mailbox: Mailbox) -> None:
    poller = poller_of(config_of(mailbox, host="imap.example.com"), [])
    with pytest.raises(MailboxError, match="refusing to send the mailbox password in clear"):
        poller.poll_once()


def test_run_logs_a_failed_poll_and_keeps_polling(mailbox: Mailbox, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    write_private(password_file, "wrong\n")
    mailbox.append(raw("aws-suspension-pst.eml"))
    delivered: list[Notice] = []
    poller = poller_of(config_of(mailbox, password_file=password_file), delivered)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: poller.last_error, timeout=10, what="a failed poll", retry_on=())
        assert "refused the login" in (poller.last_error or "")
        write_private(password_file, mailbox.password + "\n")  # the password is fixed
        wait_for(lambda: delivered, timeout=10, what="the notice after the fix", retry_on=())
        assert [n.provider for n in delivered] == ["aws"]
        wait_for(lambda: poller.last_error is None, timeout=10, what="a clean poll", retry_on=())
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
