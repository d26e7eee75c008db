"""The agent's ``rejoin`` operation: make this host's server a streaming standby.

A part of ``Agent`` (a mixin): it uses the agent's host, supervisor, journal
and lease. The steps are ``failover.agent.rejoin``'s; this is their order,
with the waits and the fallbacks between them.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from failover import logs
from failover.agent import rejoin as rj
from failover.agent.config import AgentConfig
from failover.agent.journal import AgentJournal
from failover.agent.lease import Lease
from failover.agent.pghost import PROVIDER, PgHost
from failover.agent.supervisor import Supervisor
from failover.data.hba import is_fence
from failover.data.postgres import PgEndpoint
from failover.exceptions import ProviderError
from failover.waiting import WaitTimeout

log = logging.getLogger("failover.agent")
Body = dict[str, Any]
REWRITING = "rejoin.rewriting"  # journal: the data dir is being rewound or copied
REWOUND_READY = 60.0  # seconds a rewound server gets to reach a consistent state
NUDGE_EVERY = 2.0  # seconds between WAL records asked of an idle primary (see _wait_consistent)


class Rejoining:
    """``rejoin``, for the agent that has these parts."""

    config: AgentConfig
    host: PgHost
    journal: AgentJournal
    lease: Lease
    supervisor: Supervisor

    def _reload(self) -> None:
        """Have the server reread its configuration (the agent signals its postmaster)."""
        raise NotImplementedError

    def rejoin(self, body: Body, say: Callable[[str], None]) -> Body:
        """Make this server a streaming standby of the primary at primary_host:primary_port."""
        host, port, hba = rj.rejoin_params(body)
        deadline = time.monotonic() + float(body.get("timeout", 300))

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        spec = self.config.postgres
        primary = PgEndpoint(host, port, spec.superuser, "postgres", passfile=str(spec.passfile))
        if (host, port) == (spec.address, spec.port):
            raise ProviderError("cannot make this server a standby of itself",
                                provider=PROVIDER, code="same-site")
        # A standby holds no lease: one kept from its days as a primary would fence it
        # the moment it is promoted again.
        self.lease.release()
        self.journal.set("self_fenced", None)
        timeline = rj.primary_timeline(primary)
        running = self.supervisor.child("postgres").running()
        if running and self.host.is_standby_dir() and not rj.following(self.host, primary,
                                                                       timeline):
            # A standby that has just started (its agent restarted it) connects in a
            # moment: give it that before rewinding or copying anything.
            with contextlib.suppress(WaitTimeout):
                rj.wait_following(self.host, primary, timeline, timeout=min(5.0, left()))
        if running and rj.following(self.host, primary, timeline):
            self.journal.set(REWRITING, None)  # a server runs on the files: they are whole
            if hba is not None and self.host.hba() != hba:
                self.host.write_hba(hba)
                self._reload()
            return {"how": rj.ALREADY.format(primary=f"{host}:{port}")}
        if running:
            # A server still in crash recovery (just restarted after a kill) that is stopped
            # now is "shut down in recovery" short of its WAL's end: pg_rewind would then
            # find nothing to rewind, and it could never follow. Let recovery end first.
            with contextlib.suppress(WaitTimeout):
                self.host.wait_ready(timeout=min(30.0, left()))
        rj.primary_timeline(primary, checkpoint=True)  # so that pg_rewind sees the fork
        say("stopping postgres")
        self.supervisor.stop("postgres", timeout=min(30.0, left()))
        how, aside = self._rewrite_as_standby(primary, hba, left, say, rewind=True)
        try:
            self._wait_consistent(primary, min(REWOUND_READY, left()) if how == rj.REWOUND
                                  else left())
        except WaitTimeout:  # the way out, should the nudges not do
            if how != rj.REWOUND:
                raise
            say(f"the rewound server did not accept connections in {REWOUND_READY:g}s; "
                "copying a fresh base backup")
            logs.log_event(log, "agent.rejoin.rewound_not_ready", seconds=REWOUND_READY)
            self.supervisor.stop("postgres", timeout=min(30.0, left()))
            how, aside = self._rewrite_as_standby(primary, hba, left, say, rewind=False)
            self._wait_consistent(primary, left())
        self.journal.set(REWRITING, None)
        rj.wait_following(self.host, primary, timeline, timeout=left())
        if aside is not None:
            shutil.rmtree(aside)  # the new data dir works: the old one can go
        return {"how": how}

    def _wait_consistent(self, primary: PgEndpoint, timeout: float) -> None:
        """Wait until the new standby accepts connections, nudging the primary meanwhile.

        A rewound server is consistent once it has replayed past the position
        pg_rewind took from the primary. When the primary had just switched to
        a new WAL segment (archive_timeout) and then writes nothing, that
        position is the segment's start, which no record ends past: the standby
        would wait as long as the primary stays idle (seen in the lab: minutes).
        A restore point is a WAL record: one every few seconds ends the wait.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.host.wait_ready(timeout=min(NUDGE_EVERY,
                                                 max(0.5, deadline - time.monotonic())))
                return
            except WaitTimeout:
                if time.monotonic() >= deadline:
                    raise
            rj.nudge(primary)

    def _rewrite_as_standby(self, primary: PgEndpoint, hba: str | None,
                            left: Callable[[], float], say: Callable[[str], None], *,
                            rewind: bool) -> tuple[str, Path | None]:
        """Rewind (or copy anew) the stopped server's files and start it as a standby."""
        with self.host.rewriting(timeout=left()):  # waits for a killed agent's tool
            interrupted = self.journal.setting(REWRITING) == "yes"
            self.journal.set(REWRITING, "yes")
            how, aside = rj.rewind_or_rebuild(self.host, primary, left, say,
                                              rewind=rewind and not interrupted)
        self.host.configure_standby(primary.host, primary.port)
        if hba is not None:
            self.host.write_hba(hba)
        else:
            self._drop_copied_fence()
        say(f"{how}; starting postgres as a standby")
        self.supervisor.start("postgres")
        return how, aside

    def _drop_copied_fence(self) -> None:
        """pg_rewind and pg_basebackup copy the primary's pg_hba.conf: a fence there (its
        sidecar comes along) must not lock this standby's own clients out once promoted."""
        copied = self.host.hba()
        if copied is not None and is_fence(copied) and self.host.sidecar.exists():
            self.host.write_hba(self.host.unfenced_hba())
            self.host.sidecar.unlink()

