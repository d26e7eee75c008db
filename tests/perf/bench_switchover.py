"""Benchmark: N planned switchovers back and forth with a writer running throughout.

Starts a lab on a scratch subnet, a one-user workload that finds the app through
the lab's DNS (honouring the TTL) and posts 20 times a second, then runs the real
CLI ``failover switchover --to`` N times, alternating sites. Afterwards every
acknowledged post is looked for at the final primary, by id. Prints, per
switchover, the longest stretch the writer could not write and each step's
time from the journal; then the median and worst. Not a test: run by hand,
e.g. ``.venv/bin/python tests/perf/bench_switchover.py --switchovers 20``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from failover.drill.resolver import CachingResolver
from failover.drill.workload import Workload, WorkloadLog, WorkloadSpec, missing_posts
from failover.engine.deployment import open_deployment
from tests.conftest import running_lab

OTHER = {"aws": "hetzner", "hetzner": "aws"}


def _window(log: WorkloadLog, start: float, end: float) -> float:
    """The longest write-unavailability window that overlaps [start, end]."""
    return max(
        (b - a for a, b in log.unavailable_windows() if b >= start and a <= end), default=0.0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switchovers", type=int, default=20)
    parser.add_argument("--subnet", default="127.81")
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second")
    args = parser.parse_args()

    with running_lab(args.subnet, "failover-bench-switchover-") as lab:
        env = {**os.environ, "FAILOVER_STATE_DIR": str(lab.lab.paths.root)}
        def resolver() -> CachingResolver:
            return CachingResolver(lab.layout.app_name,
                                   [(lab.layout.dns_address, lab.layout.dns_port)])

        spec = WorkloadSpec(rate=args.rate, users=1, write_share=1.0, media_share=0.0)
        writer = Workload(spec, resolver, port=lab.layout.app_port,
                          host_header=lab.layout.app_name.rstrip("."))
        writer.start()
        rows: list[tuple[int, str, float, float]] = []
        steps_by_action: dict[str, list[float]] = {}
        site = "aws"
        try:
            writer.wait_acks(20, timeout=30)
            for n in range(1, args.switchovers + 1):
                site = OTHER[site]
                t0 = time.time()
                done = subprocess.run(
                    [sys.executable, "-m", "failover", "switchover", "--to", site, "--yes",
                     "--json"], capture_output=True, text=True, env=env, timeout=600,
                )
                t1 = time.time()
                if done.returncode != 0:
                    sys.exit(f"switchover {n} to {site} failed:\n{done.stderr}")
                run = json.loads(done.stdout)
                writer.wait_acks(10, timeout=30)  # writing again at the new primary
                for step in run["steps"]:
                    key = f"{step['index'] + 1:2d} {step['action']}"
                    steps_by_action.setdefault(key, []).append(step["seconds"])
                rows.append((n, site, t1 - t0, _window(writer.log, t0, time.time())))
                print(f"{n:>3} -> {site:<8} run {rows[-1][2]:6.2f}s   write-unavailable "
                      f"{rows[-1][3]:5.2f}s", flush=True)
        finally:
            log = writer.stop()
        deployment = open_deployment(None, lab.lab.paths.root)
        ids = [a.id for a in log.acked_posts() if a.id]
        lost = missing_posts(replace(deployment.endpoint(site), dbname="social"), ids)

    runs, gaps = [r[2] for r in rows], [r[3] for r in rows]
    causes = log.failures_by_cause()  # every request is a write here
    print()
    print(f"switchovers: {len(rows)}, acknowledged writes: {len(ids)}, lost: {len(lost)}")
    print(f"failed writes by cause: {causes or 'none'}")
    print(f"switchover wall time      median {statistics.median(runs):6.2f}s  worst "
          f"{max(runs):6.2f}s")
    print(f"write-unavailable window  median {statistics.median(gaps):6.2f}s  worst "
          f"{max(gaps):6.2f}s")
    print("per step (journal):        median    worst")
    for action, seconds in steps_by_action.items():
        print(f"  {action:<24} {statistics.median(seconds):7.3f}s {max(seconds):7.3f}s")
    if lost:
        sys.exit(f"LOST {len(lost)} acknowledged writes, e.g. {lost[:3]}")


if __name__ == "__main__":
    main()
