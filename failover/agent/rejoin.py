"""Rejoin: make this host's server a streaming standby of a primary elsewhere.

SQL can promote a standby but cannot turn an old primary into a standby of
the new one: that takes stopping the server, rewinding its files
(pg_rewind) or, when that cannot work, copying them afresh (a base backup),
and starting it again.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from failover.agent.pghost import PROVIDER, PgHost
from failover.data.postgres import PgEndpoint
from failover.exceptions import ProviderError
from failover.provision.network import is_address
from failover.waiting import wait_for

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
REWOUND = "rewound"
REBUILT = "rebuilt (fresh base backup)"
ALREADY = "already a standby of {primary}"


def primary_timeline(primary: PgEndpoint, checkpoint: bool = False) -> int:
    """The timeline the primary writes on; refuses when it is no reachable primary.

    With ``checkpoint``, a checkpoint first: pg_rewind reads the source's
    timeline from its control file, which a freshly promoted server updates
    only at its next checkpoint; before that pg_rewind says "no rewind
    required" of a target that diverged.
    """
    try:
        with primary.connect(timeout=3) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is None or row[0]:
                raise ProviderError(f"{primary.host}:{primary.port} is a standby, not a "
                                    "primary; promote it first", provider=PROVIDER,
                                    code="not-primary")
            if checkpoint:
                conn.execute("CHECKPOINT")
            wal = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    except ProviderError:
        raise
    except Exception as exc:
        raise ProviderError(f"cannot reach the primary at {primary.host}:{primary.port} to "
                            f"follow it: {' '.join(str(exc).split())}", provider=PROVIDER,
                            code="UNREACHABLE") from exc
    assert wal is not None
    return int(wal[0][:8], 16)  # a WAL file's name starts with its timeline


def following(host: PgHost, primary: PgEndpoint, timeline: int) -> bool:
    """Whether the local server streams from ``primary`` on the primary's timeline.

    The primary's pg_stat_replication alone is not proof: a standby stuck on
    a timeline that forked off reconnects every few seconds and shows as
    "streaming" for a moment each time. So both ends are asked.
    """
    name = host.spec.settings.get("cluster_name")
    try:
        with host.connect(timeout=1) as conn:
            row = conn.execute("SELECT status, received_tli, sender_host "
                               "FROM pg_stat_wal_receiver").fetchone()
        with primary.connect(timeout=1) as conn:
            seen = conn.execute("SELECT state FROM pg_stat_replication WHERE "
                                "application_name = %s", (name,)).fetchone()
    except psycopg.Error:  # either not reachable: not following
        return False
    return (seen is not None and seen[0] == "streaming" and row is not None
            and tuple(row) == ("streaming", timeline, primary.host))


def rewind_or_rebuild(host: PgHost, primary: PgEndpoint, left: Callable[[], float],
                      say: Callable[[str], None], *,
                      rewind: bool = True) -> tuple[str, Path | None]:
    """pg_rewind, else a fresh base backup; returns how and the old data dir set aside.

    Without ``rewind`` (an earlier rewrite of these files was interrupted) only the
    base backup: pg_rewind must not be run again on what one left, whole or in part
    (it recovers the files first and may then find "no rewind required" of a data
    dir that no longer fits the primary's history).
    """
    if not rewind:
        say("an earlier rewind or copy of these files was interrupted; copying a fresh "
            "base backup")
    else:
        say("rewinding (pg_rewind)")
        try:
            host.rewind(primary.host, primary.port, timeout=left())
        except ProviderError as exc:
            say(f"pg_rewind could not: {exc}; copying a fresh base backup")
        else:
            return REWOUND, None
    pgdata = host.spec.data_dir
    aside: Path | None = None
    if pgdata.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        aside = pgdata.with_name(f"{pgdata.name}.before-rebuild-{stamp}")
        pgdata.rename(aside)
    try:
        host.base_backup(primary.host, primary.port, timeout=left())
    except BaseException:
        shutil.rmtree(pgdata, ignore_errors=True)  # a partial copy
        if aside is not None:
            aside.rename(pgdata)
        raise
    return REBUILT, aside


def nudge(primary: PgEndpoint) -> None:
    """Have the primary write one WAL record (a restore point); best effort."""
    with contextlib.suppress(psycopg.Error), primary.connect(timeout=2) as conn:
        conn.execute("SELECT pg_create_restore_point('failover-rejoin')")


def wait_following(host: PgHost, primary: PgEndpoint, timeline: int, timeout: float) -> None:
    """Wait until the local server follows ``primary`` on its timeline."""
    wait_for(lambda: following(host, primary, timeline), timeout=timeout,
             what=f"postgres to stream from {primary.host}:{primary.port}",
             retry_on=())  # following() answers every "not yet" with False


def rejoin_params(params: dict[str, Any]) -> tuple[str, int, str | None]:
    """(host, port, hba) of a rejoin request, checked: no shell ever sees them, but
    a wrong type must be a clear refusal, not a traceback."""
    host, port, hba = params.get("primary_host"), params.get("primary_port"), params.get("hba")
    if not isinstance(host, str) or not (is_address(host) or _HOSTNAME.fullmatch(host)):
        raise ValueError("primary_host must be an IP address or a host name")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("primary_port must be a port number")
    if hba is not None and not isinstance(hba, str):
        raise ValueError("hba must be the text of a pg_hba.conf")
    return str(host), port, hba
