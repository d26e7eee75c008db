"""The primary's lease, on the controller's side: renewing it, and knowing when it has lapsed.

The controller renews the lease of the site it holds to be the primary, through
that site's agent, every ``renew_every`` seconds, for ``seconds`` at a time.
Before each renewal is sent, the time it would end at is written down in the
lease book (``leases.sqlite`` beside the journal): a renewal that got no answer
may still have arrived, so the book always holds the latest end the agent can
possibly have. An emergency promote waits until that time has passed (plus a
margin for the clocks) unless it positively fenced the old primary: from then
on the old primary has fenced itself, and two primaries cannot both take writes.

Moves see the lease through ``PrimaryLeases``: withhold it from a primary
being replaced, know when that primary has certainly fenced itself, allow
it to the site being promoted. ``LeaseBook`` is that seam for a
controller's renewals (``LeaseKeeper``); when the agents hold the lease in
etcd themselves, ``failover.cluster.primarylease.EtcdLeases`` is
(``Deployment.primary_leases`` chooses).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from failover import logs
from failover.exceptions import FailoverError

log = logging.getLogger("failover.lease")
CLOCK_MARGIN = 0.5  # seconds the controller's and an agent's clocks may differ (NTP: ms)
# Renewals that got no answer in a row before the keeper stops extending the lease
# and only asks whether the agent answers again (a request that asks is harmless;
# a renewal may arrive late and extend the time an emergency promote must wait).
SUSPECT_AFTER = 2


class LeaseWithheld(FailoverError):
    """A renewal refused by the book: a promote is replacing that site."""


class PrimaryLeases(Protocol):
    """The primary's lease as moves see it, wherever it is kept."""

    # Whether withholding the lease is what ends it: its holder keeps it alive by itself
    # (an agent that reaches etcd) until a promote withholds it, and then fences itself.
    ended_by_withhold: bool

    def withhold(self, site: str) -> None:
        """No more renewals for ``site``: a promote replaces it (until ``allow``)."""

    def lapsed_by(self, site: str) -> float | None:
        """When (Unix seconds) the site's lease has certainly lapsed, as far as known now;
        None: it never held one. A time ahead may move on: ask again once it has come."""

    def allow(self, site: str) -> None:
        """``site`` is being promoted: it may hold the lease."""


class LeaseBook:
    """When each site's lease ends at the latest, as far as any renewal sent could make it."""

    ended_by_withhold = False  # a controller that no longer reaches its holder renews nothing

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS leases (site TEXT PRIMARY KEY, "
                   "expires_at REAL NOT NULL, renewed_at REAL NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS withheld (site TEXT PRIMARY KEY, at REAL)")
        return db

    def granting(self, site: str, expires_at: float) -> None:
        """Write down a renewal about to be sent (before it is: it may arrive unanswered).

        Refused (LeaseWithheld) while a promote is replacing the site: a renewal
        begun before the promote looked must not extend what it waits for.
        """
        with self._lock:
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                if db.execute("SELECT 1 FROM withheld WHERE site = ?", (site,)).fetchone():
                    db.execute("ROLLBACK")
                    raise LeaseWithheld(f"{site} is being replaced by a promote: its lease "
                                        "is not renewed")
                db.execute("INSERT INTO leases (site, expires_at, renewed_at) VALUES (?, ?, ?) "
                           "ON CONFLICT (site) DO UPDATE SET expires_at = MAX(expires_at, "
                           "excluded.expires_at), renewed_at = excluded.renewed_at",
                           (site, expires_at, time.time()))
                db.execute("COMMIT")
            finally:
                db.close()

    def withhold(self, site: str) -> None:
        """No more renewals for ``site`` (a promote replaces it) until ``allow``."""
        with self._lock:
            db = self._db()
            try:
                db.execute("INSERT OR REPLACE INTO withheld (site, at) VALUES (?, ?)",
                           (site, time.time()))
            finally:
                db.close()

    def allow(self, site: str) -> None:
        """Renewals for ``site`` again (it is being promoted: it is the primary now)."""
        if not self.path.exists():
            return
        with self._lock:
            db = self._db()
            try:
                db.execute("DELETE FROM withheld WHERE site = ?", (site,))
            finally:
                db.close()

    def ends_at(self, site: str) -> float | None:
        """The latest time the site may hold its lease until; None: never granted one."""
        if not self.path.exists():
            return None
        with self._lock:
            db = self._db()
            try:
                row = db.execute("SELECT expires_at FROM leases WHERE site = ?",
                                 (site,)).fetchone()
            finally:
                db.close()
        return None if row is None else float(row[0])

    def lapsed_by(self, site: str) -> float | None:
        """When the site's lease has certainly lapsed (its end plus the clocks' margin)."""
        ends = self.ends_at(site)
        return None if ends is None else ends + CLOCK_MARGIN


class LeaseKeeper:
    """Renews the lease of the site ``holder()`` names, from a thread, until stopped."""

    def __init__(self, book: LeaseBook, renew: Callable[[str, float, float], object],
                 answers: Callable[[str, float], object], holder: Callable[[], str | None], *,
                 seconds: float, every: float) -> None:
        self.book = book
        self._renew = renew
        self._answers = answers  # asks the agent something harmless; raises when it cannot
        self._holder = holder  # the site to keep, or None (no primary known, an emergency)
        self.seconds = seconds
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: dict[str, str] = {}
        self._misses: dict[str, int] = {}
        self.held: str | None = None  # the site last renewed

    def start(self) -> None:
        """Begin renewing."""
        self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the leases then lapse by themselves)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                site = self._holder()
                if site is not None:
                    self.renew_once(site)
            except Exception as exc:  # a bug or a broken book must not end the renewals
                logs.log_event(log, "lease.renew", outcome="error",
                               detail=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            self._stop.wait(max(0.0, self.every - (time.monotonic() - started)))

    def renew_once(self, site: str) -> bool:
        """One renewal of ``site``'s lease; False (and logged once) when it failed.

        After ``SUSPECT_AFTER`` renewals without an answer, the agent is only
        asked whether it answers; renewing starts again once it does.
        """
        timeout = min(self.every, self.seconds / 4)
        try:
            if self._misses.get(site, 0) >= SUSPECT_AFTER:
                self._answers(site, timeout)
            expires_at = time.time() + self.seconds
            self.book.granting(site, expires_at)
            self._renew(site, expires_at, timeout)
        except FailoverError as exc:
            self._misses[site] = self._misses.get(site, 0) + 1
            why = " ".join(str(exc).split())[:200]
            if self._failing.get(site) != why:  # a line when it starts failing, not every time
                logs.log_event(log, "lease.renew", site=site, outcome="failed", detail=why)
            self._failing[site] = why
            return False
        self._misses[site] = 0
        self.held = site
        if site in self._failing:
            logs.log_event(log, "lease.renew", site=site, outcome="ok again")
            del self._failing[site]
        return True
