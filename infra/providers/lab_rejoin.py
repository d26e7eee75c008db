"""How the lab's compute adapter makes an old primary follow a new one.

SQL can promote a standby but cannot turn the old primary into a standby of
the new one: that takes stopping the server, rewinding its files (pg_rewind)
or, when that cannot work, copying them afresh (a base backup), and starting
it again. These are the pieces; ``LabCompute.rejoin_database`` runs them in
order and keeps the lab's records.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from failover import logs
from failover.exceptions import ProviderError
from failover.waiting import wait_for
from infra.lab.exceptions import LabError
from infra.lab.postgres import LabPostgres

log = logging.getLogger("failover.compute")

PROVIDER = "lab"
REWOUND = "rewound"
REBUILT = "rebuilt (fresh base backup)"
ALREADY = "already a standby of {primary}"


def primary_timeline(pg: LabPostgres, primary: str, checkpoint: bool = False) -> int:
    """The timeline ``primary`` writes on; refuses when it is no reachable primary.

    With ``checkpoint``, a checkpoint first: pg_rewind reads the source's
    timeline from its control file, which a freshly promoted server updates
    only at its next checkpoint; before that pg_rewind says "no rewind
    required" of a target that diverged.
    """
    try:
        with pg.endpoint(primary).connect(timeout=3) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is None or row[0]:
                raise ProviderError(
                    f"postgres@{primary} is a standby, not a primary; promote it first",
                    provider=PROVIDER, code="not-primary",
                )
            if checkpoint:
                conn.execute("CHECKPOINT")
            wal = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    except ProviderError:
        raise
    except Exception as exc:
        raise ProviderError(
            f"cannot reach postgres@{primary} to follow it: {exc}",
            provider=PROVIDER, code="UNREACHABLE",
        ) from exc
    assert wal is not None
    return int(wal[0][:8], 16)  # a WAL file's name starts with its timeline


def following(pg: LabPostgres, site: str, primary: str, timeline: int) -> bool:
    """Whether ``site`` streams from ``primary`` on the primary's timeline.

    The primary's pg_stat_replication alone is not proof: a standby stuck
    on a timeline that forked off (it cannot follow) reconnects every few
    seconds and shows as "streaming" for a moment each time.
    """
    try:
        with pg.endpoint(site).connect(timeout=1) as conn:
            row = conn.execute(
                "SELECT status, received_tli, sender_host FROM pg_stat_wal_receiver"
            ).fetchone()
        seen_by_primary = pg.streams(primary, site)
    except psycopg.Error:  # either not reachable: not following
        return False
    return seen_by_primary and row is not None and tuple(row) == (
        "streaming", timeline, pg.layout.address(primary)
    )


def wait_following(pg: LabPostgres, site: str, primary: str, timeline: int,
                   timeout: float) -> None:
    """Wait until ``site`` follows ``primary`` on its timeline (see ``following``)."""
    wait_for(lambda: following(pg, site, primary, timeline), timeout=timeout,
             what=f"postgres@{site} to stream from {primary}",
             retry_on=())  # following() answers every "not yet" with False


def hba_on_disk(pg: LabPostgres, site: str) -> str | None:
    """The site's pg_hba.conf as its data dir holds it; None when there is none."""
    try:
        return (pg.paths.pgdata(site) / "pg_hba.conf").read_text()
    except FileNotFoundError:
        return None


def rewind_or_rebuild(
    pg: LabPostgres, site: str, primary: str, left: Callable[[], float]
) -> tuple[str, Path | None]:
    """pg_rewind, else a fresh base backup; returns how and the old data dir set aside."""
    try:
        said = pg.rewind(site, primary, timeout=left())
    except LabError as exc:
        logs.log_event(log, "compute.rewind", site=site, primary=primary, outcome="failed",
                       error=str(exc).splitlines()[-1])
    else:
        detail = ("no rewind required" if "no rewind required" in said
                  else "crash recovery, rewound" if "crash recovery" in said
                  else "rewound")
        logs.log_event(log, "compute.rewind", site=site, primary=primary, outcome=detail)
        return REWOUND, None

    pgdata = pg.paths.pgdata(site)
    aside: Path | None = None
    if pgdata.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        aside = pgdata.with_name(f"pgdata.before-rebuild-{stamp}")
        pgdata.rename(aside)
    try:
        pg.base_backup(site, primary, timeout=left())
    except BaseException:
        shutil.rmtree(pgdata, ignore_errors=True)  # a partial copy
        if aside is not None:
            aside.rename(pgdata)
        raise
    logs.log_event(log, "compute.rebuild", site=site, primary=primary, aside=aside or "-")
    return REBUILT, aside
