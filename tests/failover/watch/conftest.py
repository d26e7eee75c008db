"""Fixtures for the controller's tests: a real IMAP server (dovecot) on loopback 127.98."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import starts_servers
from tests.failover.watch.dovecot import DOVECOT, Dovecot, Mailbox, running_dovecot

# Loopback 127.98.x.y is this directory's (other test modules use other subnets).
IMAP_ADDRESS = os.environ.get("FAILOVER_WATCH_TEST_IMAP", "127.98.0.1")


@pytest.fixture(scope="session")
@starts_servers
def dovecot() -> Iterator[Dovecot]:
    """One dovecot for the session, stopped by PID at the end whatever happened."""
    if not Path(DOVECOT).exists():
        pytest.fail(f"{DOVECOT} is missing: run scripts/setup.sh as root, or "
                    "apt-get install dovecot-imapd")
    with running_dovecot(IMAP_ADDRESS) as server:
        yield server


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Mailbox:
    """A fresh, empty mailbox of its own on the session's dovecot."""
    return dovecot.new_mailbox()
