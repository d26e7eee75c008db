"""The controller's probes against real servers, and the scheduler against fake probes.

HTTP probes look at small servers started here on 127.99.1.x (ready, 503,
silent, closed, frozen after one answer) from vantage points on 127.99.2.x;
database and DNS probes look at the session's lab (run it on 127.99 with
FAILOVER_TEST_SUBNET=127.99 when other labs hold 127.77). Bounds on a look's
duration are the probes' contract (down within the timeout), checked with a
wide margin. The scheduler runs fake probes on a virtual clock: no test of it
waits, and every time it checks is exact.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from failover.config import (
    CONFIG_FILE_NAME,
    FailoverConfig,
    ProbeSettings,
    VantageConfig,
    WatchConfig,
    load_config,
)
from failover.data.postgres import PgEndpoint
from failover.engine.deployment import Deployment
from failover.waiting import wait_for
from failover.watch.probes import (
    ApiProbe,
    AuthoritativeReader,
    DatabaseProbe,
    DnsProbe,
    HttpProbe,
    Probe,
    ProbeScheduler,
    VantageClient,
    build_probes,
)
from failover.watch.providers import ApiAnswer, Ec2ApiConfig
from failover.watch.signals import Observation, ProbeKind
from infra.providers.lab_faults import LabFaults
from tests.conftest import RunningLab
from tests.failover.watch.virtualclock import VirtualClock

T = TypeVar("T")
SERVERS = "127.99.1"  # where this module's own servers listen
VANTAGES = ("127.99.2.1", "127.99.2.2")  # where its vantage points' connections leave from
MARGIN = 1.0  # scheduling slack on top of a timeout: far below what an unbounded wait costs


def run(coro: Awaitable[T]) -> T:
    """Run one coroutine on a fresh event loop."""
    async def main() -> T:
        return await coro
    return asyncio.run(main())


# --- small HTTP servers ------------------------------------------------------------


@dataclass
class HttpServer:
    """A tiny HTTP/1.1 server with keep-alive that records who asked, on which connection."""

    status: int = 200
    body: bytes = b'{"site": "aws", "role": "primary", "writable": true}'
    drop_reused: bool = False  # close a reused connection instead of answering (once)
    frozen: asyncio.Event = field(default_factory=asyncio.Event)  # set: read, never answer
    peers: list[str] = field(default_factory=list)  # source address of each connection
    requests: list[int] = field(default_factory=list)  # connection number of each request
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until the client closes it."""
        number = len(self.peers)
        self.peers.append(writer.get_extra_info("peername")[0])
        served = 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests.append(number)
                if self.frozen.is_set():  # a frozen app: no answer until the client gives up
                    await reader.read()
                    return
                if self.drop_reused and served:
                    self.drop_reused = False
                    return  # closing the connection: a kept-alive connection gone stale
                reason = b"OK" if self.status == 200 else b"Service Unavailable"
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s"
                             % (self.status, reason, len(self.body), self.body))
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: HttpServer, host: str) -> AsyncIterator[HttpServer]:
    """``server`` listening on ``host`` (a free port) for the block's duration."""
    listener = await asyncio.start_server(server.handle, host, 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def vantage(index: int = 0) -> VantageClient:
    """A vantage point whose connections leave from its own loopback address."""
    return VantageClient(f"v{index + 1}", VANTAGES[index])


def test_a_ready_app_is_up_with_its_role_seen_from_each_vantage_address() -> None:
    async def scenario() -> None:
        async with serving(HttpServer(), f"{SERVERS}.1") as server:
            url = f"http://{SERVERS}.1:{server.port}/readyz"
            probes = [HttpProbe("aws", url, vantage(i), timeout=2.0) for i in range(2)]
            looks = [await p.look() for p in probes for _ in range(3)]
            for p in probes:
                await p.aclose()
        assert [o.status for o in looks] == ["up"] * 6, looks
        assert {o.facts["role"] for o in looks} == {"primary"}
        assert [o.vantage for o in looks] == ["v1"] * 3 + ["v2"] * 3
        # One kept-alive connection per vantage point, each from its own address.
        assert server.peers == list(VANTAGES)
        assert server.requests == [0, 0, 0, 1, 1, 1]

    run(scenario())


def test_a_503_is_down_with_the_apps_reason() -> None:
    async def scenario() -> Observation:
        body = b'{"error": "the database did not answer", "role": "unknown"}'
        async with serving(HttpServer(status=503, body=body), f"{SERVERS}.2") as server:
            probe = HttpProbe("aws", f"http://{SERVERS}.2:{server.port}/readyz", vantage())
            try:
                return await probe.look()
            finally:
                await probe.aclose()

    look = run(scenario())
    assert look.status == "down"
    assert look.detail == "HTTP 503 the database did not answer"
    assert look.facts["code"] == 503


def test_a_server_that_accepts_and_never_answers_is_down_within_the_timeout() -> None:
    # A listening socket nobody accepts from: the kernel completes the handshake.
    with closing(socket.socket()) as silent:
        silent.bind((f"{SERVERS}.3", 0))
        silent.listen(8)
        url = f"http://{SERVERS}.3:{silent.getsockname()[1]}/readyz"

        async def scenario() -> Observation:
            probe = HttpProbe("aws", url, vantage(), timeout=0.3)
            try:
                return await probe.look()
            finally:
                await probe.aclose()

        look = run(scenario())
    assert (look.status, look.detail) == ("down", "no answer in 0.3s")
    assert 0.3 <= look.seconds < 0.3 + MARGIN


def test_a_closed_port_is_down_as_refused() -> None:
    with closing(socket.socket()) as taken:
        taken.bind((f"{SERVERS}.4", 0))
        port = taken.getsockname()[1]  # bound, then closed: nobody listens there

    async def scenario() -> Observation:
        probe = HttpProbe("aws", f"http://{SERVERS}.4:{port}/readyz", vantage())
        try:
            return await probe.look()
        finally:
            await probe.aclose()

    look = run(scenario())
    assert look.status == "down"
    assert look.detail.endswith(": connection refused"), look.detail


def test_a_frozen_app_on_a_kept_alive_connection_is_down_within_the_timeout() -> None:
    async def scenario() -> None:
        async with serving(HttpServer(), f"{SERVERS}.5") as server:
            probe = HttpProbe("aws", f"http://{SERVERS}.5:{server.port}/readyz", vantage(),
                              timeout=0.3)
            first = await probe.look()
            server.frozen.set()
            frozen = await probe.look()  # sent on the kept connection, never answered
            server.frozen.clear()
            thawed = await probe.look()
            await probe.aclose()
        assert first.status == "up"
        assert (frozen.status, frozen.detail) == ("down", "no answer in 0.3s")
        assert frozen.seconds < 0.3 + MARGIN
        assert server.requests[:2] == [0, 0]  # the frozen look went out on the kept connection
        assert thawed.status == "up"
        assert server.requests[2] == 1  # the stuck connection was dropped, a new one made

    run(scenario())


def test_a_kept_connection_the_server_dropped_gets_one_fresh_try() -> None:
    async def scenario() -> None:
        async with serving(HttpServer(drop_reused=True), f"{SERVERS}.6") as server:
            probe = HttpProbe("aws", f"http://{SERVERS}.6:{server.port}/readyz", vantage())
            looks = [await probe.look() for _ in range(2)]
            await probe.aclose()
        assert [o.status for o in looks] == ["up", "up"], looks
        assert server.requests == [0, 0, 1]  # the second look: dropped, then answered afresh

    run(scenario())


# --- PostgreSQL ----------------------------------------------------------------------


def _lab_config(lab: RunningLab, **watch: Any) -> FailoverConfig:
    config = load_config(lab.lab.paths.root / CONFIG_FILE_NAME)
    return config.model_copy(update={"watch": WatchConfig(**watch)})


def _database_probe(lab: RunningLab, site: str, **kwargs: Any) -> DatabaseProbe:
    """A site's database probe, as build_probes makes it (the engine's endpoint)."""
    endpoint = Deployment(_lab_config(lab), "test").endpoint(site)
    return DatabaseProbe(site, endpoint, vantage="v1",
                         sites_by_name={"aws": "aws", "hetzner": "hetzner"}, **kwargs)


async def _until_up(probe: Probe, within: float = 10.0) -> Observation:
    """Look until the probe sees its target up (a thawed server, a returned thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (look := await probe.look()).ok and loop.time() < deadline:
        await asyncio.sleep(0.02)  # the pace of asking, not a wait for anything
    return look


def _sessions(lab: RunningLab, site: str, application_name: str) -> int:
    with lab.endpoint(site).connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (application_name,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.lab
def test_the_primary_reports_its_standbys_lag_and_the_standby_its_role(
    lab: RunningLab,
) -> None:
    primary = lab.resolve()[0]
    sites = {lab.layout.address(s): s for s in ("aws", "hetzner")}
    main, other = sites[primary], next(s for a, s in sites.items() if a != primary)

    async def scenario() -> list[Observation]:
        probes = [_database_probe(lab, main), _database_probe(lab, other)]
        looks = [await p.look() for p in probes]
        looks.append(await probes[0].look())  # again, on the kept session
        for p in probes:
            await p.aclose()
        return looks

    first, standby, again = run(scenario())
    assert first.status == "up", first
    assert first.facts["role"] == "primary"
    assert set(first.facts["standbys"]) == {other}
    assert isinstance(first.facts["standbys"][other], int)
    assert first.facts["lag_bytes"] == first.facts["standbys"][other]
    assert first.facts["replication"][other]["state"] == "streaming"
    assert first.facts["lsn"].count("/") == 1
    assert standby.status == "up", standby
    assert standby.facts["role"] == "standby"
    assert "standbys" not in standby.facts
    assert again.status == "up" and again.facts["role"] == "primary"


@pytest.mark.lab
def test_a_frozen_database_is_down_within_the_timeout_and_leaves_no_session(
    lab: RunningLab,
) -> None:
    faults = LabFaults(lab.lab.paths.root)
    name = "failover-watch-frozen-test"

    async def scenario() -> tuple[Observation, Observation, Observation, Observation]:
        probe = _database_probe(lab, "hetzner", timeout=0.5, application_name=name)
        try:
            before = await probe.look()  # the session is kept after this
            faults.freeze_process("postgres@hetzner")
            try:
                kept = await probe.look()  # the query on the kept session goes unanswered
                fresh = await probe.look()  # a new connection: the postmaster says nothing
            finally:
                faults.thaw_process("postgres@hetzner")
            after = await _until_up(probe)
            return before, kept, fresh, after
        finally:
            await probe.aclose()

    before, kept, fresh, after = run(scenario())
    assert before.status == "up"
    for look in (kept, fresh):
        assert (look.status, look.detail) == ("down", "no answer in 0.5s")
        assert look.seconds < 0.5 + MARGIN
    assert after.status == "up", after
    # The abandoned session was shut down, not left behind: after the thaw its
    # backend reads the end of the connection and exits.
    wait_for(lambda: _sessions(lab, "hetzner", name) == 0, timeout=10,
             what="the frozen look's session to end", retry_on=())


class StallingPostgres:
    """Answers the protocol's SSLRequest (N: no TLS) and then never says another word."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()  # the client closed its connection
        self.startups = 0  # startup messages received (and left unanswered)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Say N to every negotiation request; stall on the startup message."""
        try:
            while True:
                length = struct.unpack("!I", await reader.readexactly(4))[0]
                rest = await reader.readexactly(length - 4)
                if length == 8 and struct.unpack("!I", rest)[0] in (80877103, 80877104):
                    writer.write(b"N")
                    await writer.drain()
                else:
                    self.startups += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


def test_a_connect_cut_short_by_the_timeout_is_closed_not_leaked() -> None:
    async def scenario() -> tuple[Observation, StallingPostgres]:
        stalling = StallingPostgres()
        listener = await asyncio.start_server(stalling.handle, f"{SERVERS}.7", 0)
        port = listener.sockets[0].getsockname()[1]
        async with listener:
            probe = DatabaseProbe("aws", PgEndpoint(f"{SERVERS}.7", port, password="x"),
                                  vantage="v1", timeout=0.3)
            look = await probe.look()
            # Closed when the look gave up, not when libpq's own timeout or
            # Python's cycle collector gets round to it (psycopg's connect).
            await asyncio.wait_for(stalling.closed.wait(), timeout=MARGIN)
            await probe.aclose()
        return look, stalling

    look, stalling = run(scenario())
    assert stalling.startups == 1  # the handshake had begun when the look gave up
    assert (look.status, look.detail) == ("down", "no answer in 0.3s")
    assert look.seconds < 0.3 + MARGIN


def test_a_refusing_database_is_down_at_once() -> None:
    with closing(socket.socket()) as taken:
        taken.bind((f"{SERVERS}.8", 0))
        port = taken.getsockname()[1]

    async def scenario() -> Observation:
        probe = DatabaseProbe("aws", PgEndpoint(f"{SERVERS}.8", port), vantage="v1")
        try:
            return await probe.look()
        finally:
            await probe.aclose()

    look = run(scenario())
    assert look.status == "down"
    assert "refused" in look.detail.lower(), look.detail


# --- DNS ---------------------------------------------------------------------------------


@pytest.mark.lab
def test_every_dns_provider_answers_the_records_addresses_and_ttl(lab: RunningLab) -> None:
    probes = [p for p in build_probes(_lab_config(lab)) if isinstance(p, DnsProbe)]
    assert sorted(p.target for p in probes) == ["bind9", "route53"]

    async def scenario() -> dict[str, Observation]:
        looks = {p.target: await p.look() for p in probes}
        for p in probes:
            await p.aclose()
        return looks

    looks = run(scenario())
    answer = lab.resolve()
    for name, look in looks.items():
        assert look.status == "up", (name, look)
        assert look.facts["addresses"] == answer, (name, look)
        assert isinstance(look.facts["ttl"], int) and look.facts["ttl"] > 0
        assert list(look.facts["records"]) == [f"{lab.layout.app_name} A"]
    assert looks["bind9"].facts["server"] == f"{lab.layout.dns_address}:{lab.layout.dns_port}"
    assert looks["route53"].facts["server"].startswith("api http://")


def test_a_dns_server_that_never_answers_is_down_within_the_timeout() -> None:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as silent:
        silent.bind((f"{SERVERS}.9", 0))  # takes the questions, answers none
        reader = AuthoritativeReader(f"{SERVERS}.9", silent.getsockname()[1], VANTAGES[0])
        probe = DnsProbe("bind9", [("app.lab.failover.test.", "A")], reader, vantage="v1",
                         timeout=0.3)
        look = run(probe.look())
        _, source = silent.recvfrom(512)  # the question did arrive, from the vantage point
    assert look.status == "down"
    assert look.detail in (f"no answer from {reader.where} in 0.3s", "no answer in 0.3s")
    assert look.seconds < 0.3 + MARGIN
    assert source[0] == VANTAGES[0]


# --- Provider APIs ----------------------------------------------------------------------


EC2 = Ec2ApiConfig(kind="ec2", endpoint_url="http://127.99.1.10:5000")


def test_an_api_answer_becomes_the_observation() -> None:
    def refused(config: Any, timeout: float) -> ApiAnswer:
        assert (config, timeout) == (EC2, 2.0)
        return ApiAnswer("refused", "AuthFailure: the account is blocked", "AuthFailure")

    look = run(ApiProbe("aws", EC2, vantage="v1", timeout=2.0, check=refused).look())
    assert (look.kind, look.status, look.detail) == (
        "api", "refused", "AuthFailure: the account is blocked")
    assert look.facts["code"] == "AuthFailure"


def test_a_hung_api_call_is_down_and_never_runs_twice_at_once() -> None:
    release = threading.Event()
    calls: list[float] = []

    def hanging(config: Any, timeout: float) -> ApiAnswer:
        calls.append(timeout)
        release.wait(30)
        return ApiAnswer("up", "", "200")

    async def scenario() -> list[Observation]:
        probe = ApiProbe("aws", EC2, vantage="v1", timeout=0.2, check=hanging)
        looks = [await probe.look(), await probe.look()]  # the second: the first still runs
        release.set()
        looks.append(await _until_up(probe))
        return looks

    looks = run(scenario())
    assert (looks[0].status, looks[0].detail) == ("down", "no answer in 0.2s")
    assert looks[1].status == "down"
    assert looks[1].detail.startswith("still waiting for the answer to a look started")
    assert looks[-1].status == "up"
    assert len(calls) == 2  # the hung call and the one that answered: never two at once


# --- Building -----------------------------------------------------------------------------


@pytest.mark.lab
def test_build_probes_makes_http_per_site_and_vantage_and_the_rest_once(
    lab: RunningLab,
) -> None:
    config = _lab_config(
        lab, vantage_points={"east": VantageConfig(source_address=VANTAGES[0]),
                             "west": VantageConfig(source_address=VANTAGES[1])},
        probes={"http": ProbeSettings(interval=0.5, timeout=0.4),
                "database": ProbeSettings(interval=2, timeout=1.5)})
    # aws watched through an API of its own here, whatever the lab configures.
    sites = {**config.sites, "aws": config.sites["aws"].model_copy(update={"api": EC2})}
    with_api = sorted(("api", s, "east") for s, spec in sites.items() if spec.api is not None)
    probes = build_probes(config.model_copy(update={"sites": sites}))
    seen = sorted((p.kind, p.target, p.vantage) for p in probes)
    assert seen == [
        *with_api,
        ("database", "aws", "east"), ("database", "hetzner", "east"),
        ("dns", "bind9", "east"), ("dns", "route53", "east"),
        ("http", "aws", "east"), ("http", "aws", "west"),
        ("http", "hetzner", "east"), ("http", "hetzner", "west"),
    ]
    assert ("api", "aws", "east") in with_api
    timing = {(p.kind, p.interval, p.timeout) for p in probes}
    assert timing == {("http", 0.5, 0.4), ("database", 2, 1.5), ("dns", 1.0, 1.0),
                      ("api", 5.0, 5.0)}

    async def look_and_close() -> list[Observation]:
        http = [p for p in probes if p.kind == "http"]
        looks = [await p.look() for p in http]
        for p in probes:
            await p.aclose()
        return looks

    looks = run(look_and_close())
    assert all(o.ok for o in looks), looks


# --- The scheduler, on a virtual clock ---------------------------------------------------


@dataclass
class FakeProbe:
    """A probe on a virtual clock: records when each look began, takes ``durations`` (cycled).

    ``hogs`` (cycled) is time a look holds the loop without yielding, as a
    look that burns CPU does: the other probes' looks start late behind it.
    """

    clock: VirtualClock
    interval: float = 1.0
    durations: tuple[float, ...] = (0.0,)
    hogs: tuple[float, ...] = (0.0,)
    fail: bool = False
    kind: ProbeKind = "http"
    target: str = "aws"
    vantage: str = "v1"
    timeout: float = 1.0
    starts: list[float] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0
    closed: bool = False

    async def look(self) -> Observation:
        """Record the start, hold the loop for the next hog, take the next duration."""
        self.starts.append(self.clock.time())
        look = len(self.starts) - 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.clock.spend(self.hogs[look % len(self.hogs)])
            await self.clock.sleep(self.durations[look % len(self.durations)])
            if self.fail:
                raise RuntimeError("a bug in the probe")
            return Observation(self.kind, self.target, self.vantage, 0.0, "up", 0.0)
        finally:
            self.running -= 1

    async def aclose(self) -> None:
        """Remember being closed."""
        self.closed = True


def schedule(clock: VirtualClock, probes: list[FakeProbe],
             until: Callable[[list[Observation]], bool],
             ) -> tuple[ProbeScheduler, list[Observation]]:
    """Run a scheduler over ``probes`` on ``clock`` until the observations satisfy ``until``."""
    seen: list[Observation] = []

    async def scenario() -> ProbeScheduler:
        stop = asyncio.Event()

        def sink(observation: Observation) -> None:
            seen.append(observation)
            if until(seen):
                stop.set()

        typed: list[Probe] = list(probes)
        scheduler = ProbeScheduler(typed, sink, clock=clock.time, sleep=clock.sleep)
        await scheduler.run(stop)
        return scheduler

    return clock.run(scenario()), seen


def test_looks_keep_to_their_slots_without_drift() -> None:
    # Each look takes a fifth of the interval: sleeping an interval after each
    # look would drift by 8 slots over 40 looks.
    clock = VirtualClock()
    probe = FakeProbe(clock, interval=1.0, durations=(0.2,))
    scheduler, _ = schedule(clock, [probe], lambda seen: len(seen) >= 40)
    assert probe.starts == pytest.approx([float(k) for k in range(40)])
    stats = scheduler.stats()
    assert (stats["looks"], stats["skipped"], stats["probes"]) == (40, 0, 1)
    assert stats["lateness_max"] == pytest.approx(0.0)  # every look began at its slot
    assert probe.closed


def test_an_overrunning_look_skips_slots_instead_of_piling_up() -> None:
    # Every third look takes 2.5 intervals: it ends in the middle of the slot
    # after next, so the two slots it ran into are skipped and the look after
    # it starts at the following slot, not at once and not twice.
    clock = VirtualClock()
    probe = FakeProbe(clock, interval=1.0, durations=(0.0, 0.0, 2.5))
    scheduler, _ = schedule(clock, [probe], lambda seen: len(seen) >= 9)
    assert probe.starts == pytest.approx([0, 1, 2, 5, 6, 7, 10, 11, 12])
    assert probe.most_at_once == 1
    stats = scheduler.stats()
    assert (stats["looks"], stats["skipped"]) == (9, 6)  # 3, 4, 8, 9, and 13, 14 after the last
    assert stats["lateness_max"] == pytest.approx(0.0)  # a skipped slot is not lateness


def test_a_look_that_times_out_at_its_interval_is_followed_at_once() -> None:
    # A timeout equal to the interval ends a little after the next slot: the next
    # look must start then, not one interval later (that would slow detection).
    clock = VirtualClock()
    probe = FakeProbe(clock, interval=1.0, durations=(1.0625,))
    scheduler, _ = schedule(clock, [probe], lambda seen: len(seen) >= 8)
    # Back to back (a ninth began at once, before the stop was seen).
    assert probe.starts[:8] == pytest.approx([k * 1.0625 for k in range(8)])
    assert scheduler.stats()["skipped"] == 0
    assert scheduler.stats()["lateness_max"] == pytest.approx(0.0)  # its own overrun is not


def test_a_look_that_holds_the_loop_makes_the_others_late_and_that_is_recorded() -> None:
    # Two probes half an interval apart; the first holds the loop for 0.75 s of
    # each look, so the second, due at 0.5, can only start at 0.75.
    clock = VirtualClock()
    hog = FakeProbe(clock, interval=1.0, hogs=(0.75,), target="hog")
    other = FakeProbe(clock, interval=1.0, target="other")
    scheduler, _ = schedule(clock, [hog, other], lambda seen: len(seen) >= 6)
    assert other.starts == pytest.approx([0.75, 1.75, 2.75])
    assert scheduler.tracks[1].lateness_last == pytest.approx(0.25)
    assert scheduler.tracks[1].lateness_max == pytest.approx(0.25)
    assert scheduler.tracks[0].lateness_max == pytest.approx(0.0)
    stats = scheduler.stats()
    assert stats["lateness_max"] == pytest.approx(0.25)
    assert stats["lateness_p50"] == pytest.approx(0.0)  # the hog's own looks are on time
    assert stats["lateness_p99"] == pytest.approx(0.25)


def test_probes_are_spread_over_the_interval_and_a_broken_one_keeps_its_schedule() -> None:
    clock = VirtualClock()
    probes = [FakeProbe(clock, interval=1.0, target=f"site{i}") for i in range(10)]
    probes[3].fail = True
    scheduler, seen = schedule(clock, probes, lambda seen: len(seen) >= 30)
    firsts = [p.starts[0] for p in probes]
    assert firsts == pytest.approx([i / 10 for i in range(10)])  # evenly, in order
    broken = [o for o in seen if o.target == "site3"]
    assert len(broken) == 3  # its schedule went on after the first failure
    assert all(o.status == "down" and o.detail == "probe failed: a bug in the probe"
               for o in broken)
    assert probes[3].starts == pytest.approx([0.3, 1.3, 2.3])
    assert all(p.closed for p in probes)
    assert scheduler.stats()["looks"] == len(seen) == 30
