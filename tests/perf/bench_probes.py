"""Benchmark: how many endpoints one controller process probes at a 1 s interval on one core.

Starts a target process pinned to the other core that serves N distinct HTTP
endpoints (127.99.<128 + i // 250>.<1 + i % 250>:8080, one small asyncio
protocol answering GET /readyz for all of them, so the target is cheap and
its own CPU is reported to prove it), pins this process to one core, and runs
the real ProbeScheduler with N HttpProbes from one vantage point (127.99.0.2)
for --seconds after a warm-up, at each N of the ramp until the probes run
late. "Late" means a p99 lateness (a look's start after its due time) above
100 ms or any skipped look. Prints a table and the verdict: the largest N on
time. ``--costs`` also starts a lab on --subnet and measures what one look
of a database probe and of a DNS probe costs. Not a test: run it by hand, e.g.
``.venv/bin/python tests/perf/bench_probes.py --json /tmp/bench-probes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from failover.config import CONFIG_FILE_NAME, load_config
from failover.dns.rfc2136 import Rfc2136Settings
from failover.dns.route53 import Route53Provider, Route53Settings
from failover.engine.deployment import Deployment
from failover.watch.probes import (
    ApiReader,
    AuthoritativeReader,
    DatabaseProbe,
    DnsProbe,
    HttpProbe,
    Probe,
    ProbeScheduler,
    VantageClient,
)
from failover.watch.signals import Observation

PORT = 8080
SOURCE = "127.99.0.2"  # the vantage point's address
LATE_P99 = 0.100  # seconds
BODY = b'{"site": "bench", "role": "primary", "writable": true}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(BODY), BODY))


def endpoint(i: int) -> str:
    """The address of the i-th endpoint."""
    return f"127.99.{128 + i // 250}.{1 + i % 250}"


def _more_files() -> None:
    # Every endpoint holds a kept-alive connection: one descriptor each, on both sides.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the target -----------------------------------------------------------------------


class Ready(asyncio.Protocol):
    """Answers every request on the connection with the same 200 (pipelining included)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Count complete request heads, answer each."""
        self.pending += data
        heads = self.pending.count(b"\r\n\r\n")
        if heads and self.transport is not None:
            self.transport.write(RESPONSE * heads)
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4:]


async def serve(count: int) -> None:
    """Listen on every endpoint, say "ready", serve until terminated."""
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Ready, endpoint(i), PORT, backlog=64)
               for i in range(count)]
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for server in servers:
            server.close()


def start_target(count: int, core: int) -> subprocess.Popen[str]:
    """The target process, pinned to ``core``, once all its endpoints listen."""
    target = subprocess.Popen([sys.executable, __file__, "--serve", str(count),
                               "--core", str(core)], stdout=subprocess.PIPE, text=True)
    assert target.stdout is not None
    if target.stdout.readline().strip() != "ready":
        target.kill()
        target.wait()
        sys.exit(f"the target for {count} endpoints did not start")
    return target


def runqueue_wait() -> float:
    """Seconds this process's main thread has waited for a CPU while ready to run.

    The prober is pinned to one core but others' work is not: time spent
    waiting there is time another process had the core, and it shows as lateness.
    """
    return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the prober ---------------------------------------------------------------------------


async def measure(count: int, seconds: float, warmup: float, shared_pool: bool,
                  target_pid: int) -> dict[str, Any]:
    """Probe ``count`` endpoints each second; the numbers of the window after the warm-up."""
    vantage = VantageClient("bench", SOURCE, shared_pool=shared_pool)
    probes: list[Probe] = [
        HttpProbe(f"e{i}", f"http://{endpoint(i)}:{PORT}/readyz", vantage,
                  interval=1.0, timeout=1.0)
        for i in range(count)
    ]
    outcomes: Counter[str] = Counter()

    def sink(observation: Observation) -> None:
        outcomes[observation.status if observation.ok else observation.detail[:60]] += 1

    scheduler = ProbeScheduler(probes, sink)
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(warmup)  # the window's length is the measurement, not a wait
    warm = scheduler.stats()
    scheduler.reset_stats()
    outcomes.clear()
    cpu0, wall0, target0 = time.process_time(), time.monotonic(), cpu_seconds(target_pid)
    waited0 = runqueue_wait()
    await asyncio.sleep(seconds)
    stats = scheduler.stats()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    waited = runqueue_wait() - waited0
    target_cpu = cpu_seconds(target_pid) - target0
    down = sum(n for what, n in outcomes.items() if what != "up")
    stop.set()
    await running
    late = stats["lateness_p99"] > LATE_P99 or stats["skipped"] > 0
    return {
        "endpoints": count, "seconds": round(wall, 2),
        "looks_per_second": round(stats["looks"] / wall, 1),
        "due_per_second": round(count / 1.0, 1),
        "lateness_p50_ms": round(stats["lateness_p50"] * 1000, 1),
        "lateness_p99_ms": round(stats["lateness_p99"] * 1000, 1),
        "lateness_max_ms": round(stats["lateness_max"] * 1000, 1),
        "skipped": stats["skipped"], "down": down,
        "down_reasons": {k: v for k, v in outcomes.items() if k != "up"},
        "prober_cpu_percent": round(100 * cpu / wall, 1),
        "prober_waiting_for_cpu_percent": round(100 * waited / wall, 1),
        "cpu_us_per_look": round(1e6 * cpu / max(1, stats["looks"]), 1),
        "target_cpu_percent": round(100 * target_cpu / wall, 1),
        "warmup_lateness_max_ms": round(warm["lateness_max"] * 1000, 1),
        "late": late,
    }


def row(r: dict[str, Any]) -> str:
    """One line of the table."""
    return (f"{r['endpoints']:>6} {r['looks_per_second']:>9.1f} {r['due_per_second']:>7.0f} "
            f"{r['lateness_p50_ms']:>7.1f} {r['lateness_p99_ms']:>7.1f} "
            f"{r['lateness_max_ms']:>8.1f} {r['skipped']:>7} {r['down']:>6} "
            f"{r['prober_cpu_percent']:>6.1f} {r['prober_waiting_for_cpu_percent']:>6.1f} "
            f"{r['cpu_us_per_look']:>7.0f} "
            f"{r['target_cpu_percent']:>7.1f}  {'LATE' if r['late'] else 'on time'}")


HEADER = (f"{'N':>6} {'looks/s':>9} {'due/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} "
          f"{'skipped':>7} {'down':>6} {'cpu %':>6} {'wait %':>6} {'us/look':>7} "
          f"{'tgt cpu%':>7}  verdict")


# --- database and DNS looks, against a lab --------------------------------------------------


async def _cost(probe: Probe, looks: int) -> dict[str, Any]:
    """CPU (this process, all threads) and wall time per look, over ``looks`` in a row."""
    first = await probe.look()  # connects, looks a zone id up: not the steady cost
    if not first.ok:
        sys.exit(f"{probe.kind} probe of {probe.target} is down: {first.detail}")
    cpu0, walls = time.process_time(), []
    for _ in range(looks):
        observation = await probe.look()
        walls.append(observation.seconds)
    cpu = time.process_time() - cpu0
    await probe.aclose()
    return {"probe": f"{probe.kind} {probe.target}", "looks": looks,
            "cpu_us_per_look": round(1e6 * cpu / looks),
            "wall_ms_p50": round(1000 * statistics.median(walls), 2)}


def costs(subnet: str, looks: int) -> list[dict[str, Any]]:
    """What one database look and one DNS look cost, against a lab of its own."""
    from tests.conftest import running_lab

    with running_lab(subnet, "failover-bench-probes-") as lab:
        config = load_config(lab.lab.paths.root / CONFIG_FILE_NAME)
        deployment = Deployment(config, "bench")
        primary = lab.resolve()[0]
        site = next(s for s in config.sites if str(config.sites[s].address) == primary)
        keys = [r.key for r in deployment.records(site)]
        bind9, route53 = config.dns_providers["bind9"], config.dns_providers["route53"]
        assert isinstance(bind9, Rfc2136Settings) and isinstance(route53, Route53Settings)
        probes: list[Probe] = [
            DatabaseProbe(site, deployment.endpoint(site), vantage="bench"),
            DnsProbe("bind9", keys, AuthoritativeReader(bind9.server, bind9.port),
                     vantage="bench"),
            DnsProbe("route53", keys, ApiReader(Route53Provider("route53", route53)),
                     vantage="bench"),
        ]

        async def all_costs() -> list[dict[str, Any]]:
            return [await _cost(p, looks) for p in probes]

        return asyncio.run(all_costs())


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ramp", default="100,250,500,1000,2000,4000,8000",
                        help="endpoint counts to try, in order, until one runs late")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per N")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--pool", choices=("per-origin", "shared"), default="per-origin",
                        help="the HTTP client's pools: ours (per origin) or httpx's one pool")
    parser.add_argument("--keep-going", action="store_true", help="run the whole ramp")
    parser.add_argument("--refine", type=int, default=2,
                        help="steps halving the gap between the last N on time and the first late")
    parser.add_argument("--costs", action="store_true",
                        help="also measure a database and a DNS look against a lab")
    parser.add_argument("--subnet", default="127.99", help="the lab's subnet for --costs")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the target process
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    _more_files()
    cores = sorted(os.sched_getaffinity(0))
    if args.serve is not None:
        os.sched_setaffinity(0, {args.core})
        asyncio.run(serve(args.serve))
        return
    if len(cores) < 2:
        sys.exit("needs two cores: one for the prober, one for the target")
    prober_core, target_core = cores[0], cores[1]
    os.sched_setaffinity(0, {prober_core})
    print(f"prober on core {prober_core}, target on core {target_core}; interval 1 s, "
          f"timeout 1 s, {args.seconds:g} s window after {args.warmup:g} s warm-up; "
          f"pools: {args.pool}")
    print(f"late = p99 lateness above {LATE_P99 * 1000:.0f} ms or any skipped look; "
          f"load average at start {os.getloadavg()[0]:.2f}; cpu % = the prober's CPU, "
          "wait % = its time ready to run while others held its core")
    print(HEADER, flush=True)
    results: list[dict[str, Any]] = []

    def run_at(count: int) -> dict[str, Any]:
        target = start_target(count, target_core)
        try:
            result = asyncio.run(measure(count, args.seconds, args.warmup,
                                         args.pool == "shared", target.pid))
        finally:
            target.terminate()
            target.wait(timeout=30)
        result["load_average"] = round(os.getloadavg()[0], 2)
        results.append(result)
        print(row(result), flush=True)
        return result

    for count in (int(n) for n in args.ramp.split(",")):
        if run_at(count)["late"] and not args.keep_going:
            break
    # Halve the gap between the largest N on time and the smallest late one.
    for _ in range(args.refine):
        good = max((r["endpoints"] for r in results if not r["late"]), default=0)
        late = min((r["endpoints"] for r in results if r["late"]), default=0)
        if not good or not late or late - good < 20:
            break
        run_at((good + late) // 2)
    # On time means on time at every smaller N too: noise does not raise the verdict.
    first_late = min((r["endpoints"] for r in results if r["late"]), default=sys.maxsize)
    on_time = [r["endpoints"] for r in results if not r["late"] and r["endpoints"] < first_late]
    print(HEADER)
    for result in sorted(results, key=lambda r: int(r["endpoints"])):
        print(row(result))
    verdict = (f"largest N on time: {max(on_time)} endpoints at a 1 s interval on one core"
               if on_time else "no N of the ramp was on time")
    print(verdict)
    report: dict[str, Any] = {"pool": args.pool, "late_p99_ms": LATE_P99 * 1000,
                              "results": results, "largest_on_time": max(on_time, default=None)}
    if args.costs:
        report["costs"] = costs(args.subnet, 300)
        for c in report["costs"]:
            print(f"{c['probe']:<22} {c['cpu_us_per_look']:>6} us CPU per look, "
                  f"p50 {c['wall_ms_p50']} ms per look ({c['looks']} looks)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
