"""The replicator between three real moto servers: one source site, two target sites.

The servers are started once for the module and stopped by PID whatever
happens; each test works in buckets of its own. Stores answer within 1 s,
so a frozen server costs a test seconds, not minutes.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from failover.data.replicate import Replicator
from failover.processes import ProcessRecord, send, stop
from failover.stores import ObjectStoreConfig
from failover.waiting import wait_for
from tests.failover.data.test_objects import body_of, new_bucket, put, start_moto
from tests.failover.data.test_objects import credentials_file as credentials_file
from tests.failover.data.test_objects import moto_dir as moto_dir

pytestmark = pytest.mark.lab  # real moto servers, started by the module

SITES = ("site-a", "site-b", "site-c")  # site-a is the primary: its bucket is the source


@pytest.fixture(scope="module")
def servers(moto_dir: Path) -> Iterator[dict[str, tuple[ProcessRecord, str]]]:
    """Three moto servers, one per site, started side by side and stopped by PID."""
    started: dict[str, tuple[ProcessRecord, str]] = {}

    def start(site: str) -> None:
        started[site] = start_moto(f"moto@{site}", moto_dir)

    try:
        with ThreadPoolExecutor(len(SITES)) as pool:
            for future in [pool.submit(start, site) for site in SITES]:
                future.result()
        yield started
    finally:
        for record, _ in started.values():
            stop(record)


@pytest.fixture
def stores(servers: dict[str, tuple[ProcessRecord, str]],
           credentials_file: Path) -> dict[str, ObjectStoreConfig]:
    """A fresh bucket per site; C's, which a test freezes, answers within 0.5 s, the others 1 s.

    A PUT to a frozen server costs botocore's wait for "100 Continue" (1 s) and
    then the read timeout, three times over, before the target counts as dark.
    """
    return {site: new_bucket(url, credentials_file).model_copy(
                update={"timeout": 0.5 if site == "site-c" else 1})
            for site, (_, url) in servers.items()}


@pytest.fixture
def replicator(stores: dict[str, ObjectStoreConfig]) -> Iterator[Replicator]:
    """A replicator from site A's bucket to B's and C's, closed at the end."""
    with Replicator(stores["site-a"], {"site-b": stores["site-b"], "site-c": stores["site-c"]},
                    workers=2) as made:
        yield made


def objects(prefix: str, count: int) -> dict[str, bytes]:
    """Small objects of assorted sizes under one prefix."""
    return {f"{prefix}/obj-{i:03d}.bin": os.urandom(100 + i * 37) for i in range(count)}


def test_objects_put_at_the_source_reach_both_targets(
        stores: dict[str, ObjectStoreConfig], replicator: Replicator) -> None:
    first = objects("media", 20)
    for key, body in first.items():
        put(stores["site-a"], key, body)
    put(stores["site-b"], "media/obj-000.bin", b"already here: left alone")

    replicator.run_pass()

    for site in ("site-b", "site-c"):
        for key, body in first.items():
            if (site, key) != ("site-b", "media/obj-000.bin"):
                assert body_of(stores[site], key) == body
    assert body_of(stores["site-b"], "media/obj-000.bin") == b"already here: left alone"
    status = replicator.status()
    assert (status["site-b"].copied, status["site-c"].copied) == (19, 20)
    assert all(s.pending == 0 and s.error is None and s.lag_seconds is not None
               for s in status.values())

    put(stores["site-a"], "media/late.bin", b"late")
    replicator.run_pass()
    assert body_of(stores["site-c"], "media/late.bin") == b"late"
    assert replicator.status()["site-c"].copied == 21


def test_a_frozen_target_lags_alone_and_catches_up_when_it_thaws(
        servers: dict[str, tuple[ProcessRecord, str]], stores: dict[str, ObjectStoreConfig],
        replicator: Replicator) -> None:
    def caught_up(site: str) -> bool:
        status = replicator.status()[site]
        return status.pending == 0 and status.error is None

    def lag_gap() -> float:
        """How much more site C lags than site B (0 while either is unknown)."""
        status = replicator.status()
        b, c = status["site-b"].lag_seconds, status["site-c"].lag_seconds
        return 0.0 if b is None or c is None else c - b

    frozen_server = servers["site-c"][0]
    stop_loop = threading.Event()
    loop = threading.Thread(target=replicator.loop, args=(stop_loop, 0.05))
    late = objects("late", 5)
    loop.start()
    try:
        wait_for(lambda: caught_up("site-b") and caught_up("site-c"), timeout=10,
                 what="both targets to be caught up", retry_on=())
        assert send(frozen_server, signal.SIGSTOP)
        for key, body in late.items():
            put(stores["site-a"], key, body)

        # Site B keeps its pace while C's copies wait out their read timeouts.
        wait_for(lambda: replicator.status()["site-b"].copied == 5 and caught_up("site-b"),
                 timeout=10, what="site B to catch up", retry_on=())
        assert replicator.status()["site-c"].copied == 0
        wait_for(lambda: replicator.status()["site-c"].error, timeout=20,
                 what="site C to be found dark", retry_on=())
        wait_for(lambda: lag_gap() > 2, timeout=20, what="site C's lag to grow past B's",
                 retry_on=())
        status = replicator.status()
        assert 1 <= (status["site-c"].pending or 0) <= 5  # as many as its hung pass listed
        assert status["site-b"].error is None

        assert send(frozen_server, signal.SIGCONT)
        wait_for(lambda: caught_up("site-c"), timeout=20, what="site C to catch up",
                 retry_on=())
    finally:
        send(frozen_server, signal.SIGCONT)
        stop_loop.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    for key, body in late.items():
        assert body_of(stores["site-c"], key) == body
    assert replicator.status()["site-c"].lag_seconds is not None
