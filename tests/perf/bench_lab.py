"""Benchmark: how long ``failover lab up`` and ``lab down`` take, and the lab's memory.

Runs the real CLI N times on a scratch state dir and subnet (so a user's lab
is untouched) and prints each cycle and the median and worst. Not a test:
run it by hand, e.g. ``.venv/bin/python tests/perf/bench_lab.py --cycles 5``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "failover", "lab", *args],
                          capture_output=True, text=True, check=True, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--subnet", default="127.79")
    parser.add_argument("--dns-port", type=int, default=5399)
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="failover-bench-lab-"))
    state_dir.chmod(0o755)
    ups, downs, rss, pss = [], [], [], []
    try:
        print(f"{'cycle':>5} {'up s':>7} {'down s':>7} {'RSS MiB':>8} {'PSS MiB':>8}")
        for cycle in range(1, args.cycles + 1):
            t0 = time.monotonic()
            up = _cli("up", "--state-dir", str(state_dir), "--subnet", args.subnet,
                      "--dns-port", str(args.dns_port), "--json")
            ups.append(time.monotonic() - t0)
            status = json.loads(up.stdout)
            if not status["healthy"]:
                sys.exit(f"cycle {cycle}: lab not healthy after up: {up.stderr}")
            rss.append(status["memory_rss_bytes"] / 2**20)
            pss.append(status["memory_pss_bytes"] / 2**20)
            t0 = time.monotonic()
            _cli("down", "--state-dir", str(state_dir))
            downs.append(time.monotonic() - t0)
            print(f"{cycle:>5} {ups[-1]:>7.2f} {downs[-1]:>7.2f} {rss[-1]:>8.0f} {pss[-1]:>8.0f}")
        print(f"{'median':>5} {statistics.median(ups):>7.2f} {statistics.median(downs):>7.2f} "
              f"{statistics.median(rss):>8.0f} {statistics.median(pss):>8.0f}")
        print(f"{'worst':>5} {max(ups):>7.2f} {max(downs):>7.2f} {max(rss):>8.0f} {max(pss):>8.0f}")
        print("up and down are wall times of the CLI (up includes its closing status probe)")
    finally:
        subprocess.run([sys.executable, "-m", "failover", "lab", "down", "--state-dir",
                        str(state_dir)], check=False, capture_output=True)
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
