"""The primary's lease, as its agent holds it: a primary whose lease lapses fences itself.

The controller renews the lease of the site it holds to be the primary by
sending the wall-clock time the lease ends at (its clock; hosts keep time
with NTP, as the signatures' age check needs anyway). The agent turns that
into CLOCK_MONOTONIC at once, so that a host frozen for a while (SIGSTOP, a
paused VM) sees its lease lapsed the instant it runs again, whatever its
wall clock does, and the app, on the same host, compares against the same
clock. A renewal that has already ended when it arrives (it waited in a
socket's backlog while the host was frozen) is refused, so a stale request
can never revive a lease.

The lease is kept in the journal (wall clock, so it survives a restart) and
in ``lease.json`` for the app: ``{"state": "held", "monotonic_expires": T}``
or ``{"state": "off"}``. Off means no controller keeps leases (moves by hand
only) or this site is a standby; then nothing is fenced for want of one.

With ``cluster`` in its config the agent renews this lease itself, from the
hold it keeps in etcd (``failover.agent.clusterlease``), through the same
``Agent.renew_lease``; a controller's renewal is then refused.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from failover.agent.journal import AgentJournal
from failover.exceptions import FailoverError

LEASE_FILE = "lease.json"
LeaseState = Literal["off", "held", "lapsed"]
_SETTING = "lease"


class LeaseRefused(FailoverError):
    """A renewal that cannot be taken (it ended before it arrived)."""


@dataclass(frozen=True)
class LeaseView:
    """What the lease is now."""

    state: LeaseState
    expires_in: float | None  # seconds left (negative: lapsed that long ago); None when off

    def to_dict(self) -> dict[str, object]:
        """For ``status``."""
        return {"state": self.state,
                "expires_in": None if self.expires_in is None else round(self.expires_in, 3)}


class Lease:
    """The lease this agent holds (or not), kept in the journal and in a file for the app."""

    def __init__(self, journal: AgentJournal, state_dir: Path) -> None:
        self._journal = journal
        self.file = state_dir / LEASE_FILE
        self._lock = threading.Lock()
        self._expires: float | None = None  # CLOCK_MONOTONIC; None: off
        if journal.setting(_SETTING) is not None:
            # A restarted agent (a rebooted host, maybe before NTP has set its clock)
            # cannot tell how long it was gone: a lease it held counts as lapsed, and
            # the controller's next renewal gives it back.
            self._expires = time.monotonic()
        self._write_file()

    def view(self) -> LeaseView:
        """off, held or lapsed, and how long it has left."""
        with self._lock:
            if self._expires is None:
                return LeaseView("off", None)
            left = self._expires - time.monotonic()
        return LeaseView("held" if left > 0 else "lapsed", left)

    def lapsed(self) -> bool:
        """Whether a lease was held and has ended (off is not lapsed)."""
        return self.view().state == "lapsed"

    def renew(self, expires_at: float) -> LeaseView:
        """Hold the lease until ``expires_at`` (Unix seconds, the controller's clock)."""
        now = time.time()
        if expires_at <= now:
            raise LeaseRefused(
                f"the renewal ended {now - expires_at:.3f}s before it arrived (it waited, or "
                "the clocks differ): not taken; a lease is renewed only by a fresh request")
        with self._lock:
            self._expires = time.monotonic() + (expires_at - now)
            self._journal.set(_SETTING, json.dumps({"expires_at": expires_at}))
            self._write_file()
        return self.view()

    def end(self) -> None:
        """The lease ends now (its holder lost it): lapsed, and acted on as any lapse."""
        with self._lock:
            if self._expires is not None:
                self._expires = min(self._expires, time.monotonic())
                self._write_file()

    def release(self) -> None:
        """Leases off: this site is no longer a primary that a controller keeps."""
        with self._lock:
            self._expires = None
            self._journal.set(_SETTING, None)
            self._write_file()

    def _write_file(self) -> None:
        data = ({"state": "off"} if self._expires is None
                else {"state": "held", "monotonic_expires": self._expires})
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        os.chmod(tmp, 0o644)  # the app may run as another user
        tmp.replace(self.file)  # the app reads the old file or the new, never half
