"""PostgreSQL facts and moves on real servers: sync, fence, catch-up, promote.

These tests change roles (a fence, a promotion), so they start a lab of their
own on another subnet rather than use the session's. The promotion runs
last: after it both servers are primaries, which only ``lab down`` undoes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from failover.data import fencing, replication
from failover.data import postgres as pg
from failover.exceptions import FatalError, StepFailed
from failover.waiting import wait_for
from infra.lab.layout import PRIMARY_SITE, STANDBY_SITE
from infra.lab.postgres import APP_DATABASE, APP_USER, HBA
from tests.conftest import RunningLab, own_lab

pytestmark = pytest.mark.lab

SUBNET = "127.88"  # a lab of this module's own: the shared one must keep its roles

# The original pg_hba.conf of the fence tests: a tab and a backslash that COPY
# would escape, and a hostnossl line whose type the fence must keep.
ORIGINAL_HBA = (
    "# original\tfile, with a tab and a back\\slash\n"
    "hostnossl  all  postgres,app  127.0.0.0/8  scram-sha-256  # both may come\n"
    + HBA
)


pg_lab = own_lab(SUBNET, "failover-test-postgres-")


@pytest.fixture
def pg_primary(pg_lab: RunningLab) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection to the aws primary."""
    with pg_lab.endpoint(PRIMARY_SITE).connect() as conn:
        yield conn


@pytest.fixture
def pg_standby(pg_lab: RunningLab) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection to the hetzner standby."""
    with pg_lab.endpoint(STANDBY_SITE).connect() as conn:
        yield conn


@pytest.fixture
def pg_original_hba(pg_lab: RunningLab, pg_primary: psycopg.Connection[Any]) -> Iterator[str]:
    """The primary's pg_hba.conf replaced by ORIGINAL_HBA; unfenced and restored after."""
    path = pg_lab.hba_file(PRIMARY_SITE)
    lab_hba = path.read_bytes()
    path.write_bytes(ORIGINAL_HBA.encode())  # same rules as the lab's: no reload needed
    try:
        yield ORIGINAL_HBA
    finally:
        if fencing.is_fenced(pg_primary):
            fencing.unfence(pg_primary, ORIGINAL_HBA)
        path.write_bytes(lab_hba)


def _current_lsn(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def _lsn_after(conn: psycopg.Connection[Any], a: str, b: str) -> bool:
    row = conn.execute("SELECT %s::pg_lsn > %s::pg_lsn", (a, b)).fetchone()
    assert row is not None
    return bool(row[0])


# --- Synchronous replication ------------------------------------------------


def test_synchronous_commit_waits_for_the_standby_to_apply(
    pg_lab: RunningLab, pg_primary: psycopg.Connection[Any], pg_standby: psycopg.Connection[Any]
) -> None:
    try:
        replication.set_synchronous(pg_primary, STANDBY_SITE)
        replication.set_synchronous(pg_primary, STANDBY_SITE)  # idempotent
        replication.wait_synchronous(pg_primary, STANDBY_SITE, timeout=15)
        assert [lag.sync_state for lag in pg.standby_lags(pg_primary)] == ["sync"]
        table = f"t_{uuid.uuid4().hex[:8]}"
        with pg_lab.endpoint(PRIMARY_SITE, APP_USER, APP_DATABASE).connect() as app:
            app.execute(f"CREATE TABLE {table} (n int)")
            app.execute(f"INSERT INTO {table} VALUES (1)")
        # remote_apply: once the commit returned, the standby shows the row; no waiting.
        with pg_lab.endpoint(STANDBY_SITE, dbname=APP_DATABASE).connect() as reader:
            assert reader.execute(f"SELECT n FROM {table}").fetchall() == [(1,)]
    finally:
        replication.set_asynchronous(pg_primary)
    assert pg_primary.execute(
        "SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit')"
    ).fetchone() == ("", "on")
    wait_for(lambda: [s.sync_state for s in pg.standby_lags(pg_primary)] == ["async"],
             timeout=15, what="the standby to be asynchronous again", retry_on=())


def test_wait_synchronous_times_out_for_a_standby_that_is_not_there(
    pg_primary: psycopg.Connection[Any],
) -> None:
    with pytest.raises(StepFailed, match="timed out"):
        replication.wait_synchronous(pg_primary, "nowhere", timeout=0.3)


def test_alter_system_works_on_a_hot_standby(pg_standby: psycopg.Connection[Any]) -> None:
    def settings() -> Any:
        return pg_standby.execute(
            "SELECT current_setting('synchronous_standby_names'), "
            "current_setting('synchronous_commit')"
        ).fetchone()

    replication.set_synchronous(pg_standby, 'odd "name"')
    assert settings() == ('FIRST 1 ("odd ""name""")', "remote_apply")
    replication.set_asynchronous(pg_standby)
    replication.set_asynchronous(pg_standby)  # idempotent
    assert settings() == ("", "on")


def test_moves_need_an_autocommit_connection(pg_lab: RunningLab) -> None:
    with pg_lab.endpoint(PRIMARY_SITE).connect() as conn:
        conn.autocommit = False
        with pytest.raises(FatalError, match="autocommit"):
            replication.set_asynchronous(conn)


# --- Catch-up and the WAL receiver ------------------------------------------


def test_wait_replayed_returns_once_the_standby_has_the_write(
    pg_primary: psycopg.Connection[Any], pg_standby: psycopg.Connection[Any]
) -> None:
    pg_primary.execute("CREATE TABLE IF NOT EXISTS replayed (n int)")
    pg_primary.execute("INSERT INTO replayed VALUES (1)")
    lsn = _current_lsn(pg_primary)
    replayed = replication.wait_replayed(pg_standby, lsn, timeout=15)
    assert not _lsn_after(pg_standby, lsn, replayed)
    assert pg_standby.execute("SELECT count(*) FROM replayed").fetchone() == (1,)


def test_wait_replayed_fails_in_one_sentence(
    pg_primary: psycopg.Connection[Any], pg_standby: psycopg.Connection[Any]
) -> None:
    with pytest.raises(StepFailed, match=r"timed out after 0\.3s"):
        replication.wait_replayed(pg_standby, "FF/0", timeout=0.3)
    with pytest.raises(StepFailed, match="is a primary that never replayed"):
        replication.wait_replayed(pg_primary, "0/1", timeout=1)


def test_wal_receiver_on_a_standby_and_on_a_primary(
    pg_lab: RunningLab, pg_primary: psycopg.Connection[Any], pg_standby: psycopg.Connection[Any]
) -> None:
    receiver = pg.wal_receiver(pg_standby)
    assert receiver is not None
    assert receiver.status == "streaming"
    assert receiver.sender_host == pg_lab.layout.address(PRIMARY_SITE)
    assert receiver.received_lsn and receiver.replayed_lsn and receiver.latest_end_lsn
    replication.wait_replayed(pg_standby, receiver.received_lsn, timeout=15)
    assert pg.wal_receiver(pg_standby).unreplayed_bytes == 0  # type: ignore[union-attr]
    assert json.loads(json.dumps(receiver.to_dict()))["status"] == "streaming"
    assert pg.wal_receiver(pg_primary) is None


def test_a_connection_dropped_during_a_wait_fails_the_move_at_once(
    pg_lab: RunningLab, pg_standby: psycopg.Connection[Any],
) -> None:
    deadline = 60.0  # what a wait that took the drop for "not yet" would sit out
    outcome: list[BaseException | str] = []

    def wait() -> None:
        try:
            outcome.append(replication.wait_replayed(doomed, "FF/0", timeout=deadline))
        except BaseException as exc:  # handed over to the test's thread
            outcome.append(exc)

    with pg_lab.endpoint(STANDBY_SITE).connect() as doomed:
        pid = doomed.info.backend_pid
        waiting = threading.Thread(target=wait)
        waiting.start()
        try:
            wait_for(lambda: pg_standby.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE %s",
                (pid, "%pg_last_wal_replay_lsn() >=%")).fetchone(),
                timeout=10, what="the wait to poll", retry_on=())
            dropped_at = time.monotonic()
            pg_standby.execute("SELECT pg_terminate_backend(%s)", (pid,))
        finally:
            waiting.join(timeout=deadline + 10)
    assert time.monotonic() - dropped_at < 10  # well before the wait's deadline
    assert len(outcome) == 1 and isinstance(outcome[0], StepFailed), outcome
    assert "could not replay WAL up to FF/0" in str(outcome[0])


# --- The fence --------------------------------------------------------------


def test_fence_lets_in_only_replication_and_the_superuser(
    pg_lab: RunningLab, pg_primary: psycopg.Connection[Any], pg_standby: psycopg.Connection[Any],
    pg_original_hba: str,
) -> None:
    hba_file = pg_lab.hba_file(PRIMARY_SITE)
    app = pg_lab.endpoint(PRIMARY_SITE, APP_USER, APP_DATABASE)
    with app.connect() as open_session:
        open_session.execute("SELECT 1")
        fenced = fencing.fence(pg_primary, "postgres", "test fence")
        with pytest.raises(psycopg.OperationalError):
            open_session.execute("SELECT 1")

    assert not fenced.already
    assert fenced.terminated >= 1
    assert fenced.original_hba == pg_original_hba
    assert Path(f"{hba_file}.failover-unfenced").read_bytes() == pg_original_hba.encode()
    assert hba_file.read_text().startswith("# failover fence: test fence\n")
    assert fencing.is_fenced(pg_primary)

    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects connection"):
        app.connect()
    with pg_lab.endpoint(PRIMARY_SITE).connect() as superuser:
        superuser.execute("CREATE TABLE IF NOT EXISTS after_fence (n int)")
    # Replication still streams: the standby replays the fence and what came after.
    replication.wait_replayed(pg_standby, fenced.lsn, timeout=15)
    replication.wait_replayed(pg_standby, _current_lsn(pg_primary), timeout=15)
    assert [lag.state for lag in pg.standby_lags(pg_primary)] == ["streaming"]

    # A fenced primary that keeps running still writes WAL (a checkpoint here):
    # its WAL goes past the fenced LSN, so it needs pg_rewind to follow a new primary.
    pg_primary.execute("CHECKPOINT")
    assert _lsn_after(pg_primary, _current_lsn(pg_primary), fenced.lsn)

    fenced_text = hba_file.read_bytes()
    again = fencing.fence(pg_primary, "postgres", "a retry")
    assert again.already
    assert again.original_hba == pg_original_hba
    assert hba_file.read_bytes() == fenced_text
    assert Path(f"{hba_file}.failover-unfenced").read_bytes() == pg_original_hba.encode()

    fencing.unfence(pg_primary, fenced.original_hba)
    assert hba_file.read_bytes() == pg_original_hba.encode()  # the tab and backslash intact
    assert not fencing.is_fenced(pg_primary)
    with app.connect() as back:
        assert back.execute("SELECT 1").fetchone() == (1,)
    fencing.unfence(pg_primary, fenced.original_hba)  # idempotent: nothing to undo
    assert hba_file.read_bytes() == pg_original_hba.encode()


def test_a_fence_that_would_not_load_is_undone(
    pg_lab: RunningLab, pg_primary: psycopg.Connection[Any], pg_original_hba: str
) -> None:
    # hostssl lines are errors while ssl is off, so the fenced file cannot load.
    hba_file = pg_lab.hba_file(PRIMARY_SITE)
    broken = "hostssl all postgres 127.0.0.0/8 scram-sha-256\n" + pg_original_hba
    hba_file.write_text(broken)
    with pytest.raises(StepFailed, match=r"would not load .*; not fenced"):
        fencing.fence(pg_primary, "postgres", "x")
    assert hba_file.read_text() == broken
    assert not fencing.is_fenced(pg_primary)


def test_fence_refuses_what_it_cannot_do_safely(
    pg_primary: psycopg.Connection[Any], pg_standby: psycopg.Connection[Any]
) -> None:
    with pytest.raises(StepFailed, match="no such superuser"):
        fencing.fence(pg_primary, "app", "x")
    with pytest.raises(StepFailed, match="is a standby"):
        fencing.fence(pg_standby, "postgres", "x")
    with pytest.raises(StepFailed, match="is a standby"):
        fencing.unfence(pg_standby, HBA)
    with pytest.raises(StepFailed, match=r"fenced pg_hba\.conf as the original"):
        fencing.unfence(pg_primary, "# failover fence: x\n")
    assert not fencing.is_fenced(pg_primary)


# --- Promotion: last, it leaves the lab with two primaries ------------------


def test_promote_once_then_report_already_primary(
    pg_primary: psycopg.Connection[Any], pg_standby: psycopg.Connection[Any]
) -> None:
    assert pg.server_state(pg_standby).role == "standby"
    replication.set_asynchronous(pg_standby)
    assert replication.promote(pg_standby, timeout=30) is True
    assert pg.server_state(pg_standby).role == "primary"
    assert pg.wal_receiver(pg_standby) is None
    assert replication.promote(pg_standby, timeout=30) is False
    assert pg.server_state(pg_primary).role == "primary"  # nothing stopped the old one
