"""Benchmark: how long ``failover lab up`` and ``lab down`` take, and the lab's memory.

Runs the real CLI N times on a scratch state dir and subnet (so a user's lab
is untouched) and prints each cycle and the median and worst. With
``--controllers N`` each cycle also starts N controllers (``failover watch``
on the lab's configuration, each on a port of its own), lets everything
settle, and prints the memory of every kind of process: PSS from
``/proc/PID/smaps_rollup`` (shared pages divided among the processes that
share them, so the figures add up), as ``failover lab status`` counts it.
``--forked`` forks the controllers from one parent that imported them first
(``infra.lab.prefork``, as the lab starts its own servers) instead of
starting each alone. Not a test: run it by hand, e.g. ``.venv/bin/python
tests/perf/bench_lab.py --cycles 1 --controllers 3 --subnet 127.91``.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from failover.config import CONFIG_FILE_NAME
from failover.processes import ProcessRecord, is_alive, log_tail, spawn, stop, tree_memory
from failover.waiting import wait_for
from infra.lab import prefork
from infra.lab.prefork import Part

MIB = 2**20


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "failover", "lab", *args],
                          capture_output=True, text=True, check=True, timeout=300)


@contextmanager
def controllers(state_dir: Path, count: int,
                forked: bool = False) -> Iterator[list[ProcessRecord]]:
    """``count`` controllers on the lab's configuration, each answering; stopped by PID after.

    Each is ``python -m failover watch``, started alone (as a user starts one),
    or with ``forked`` forked from one parent that imported it first
    (``infra.lab.prefork``, as the lab starts its servers).
    """
    # One controller per site, as a deployment runs them (watch.cluster.controllers).
    config = yaml.safe_load((state_dir / CONFIG_FILE_NAME).read_text())
    places = list(config["watch"]["cluster"]["controllers"].items())[:count]
    if len(places) < count:
        sys.exit(f"the lab has controllers for {len(places)} sites, not {count}")
    listens = [listen for _site, listen in places]
    parts = [Part(f"watch@{site}", "failover",
                  ("watch", "--config", str(state_dir / CONFIG_FILE_NAME), "--site", site),
                  str(state_dir / "logs" / f"watch@{site}.log"), run="failover.cli")
             for site, _listen in places]
    records: list[ProcessRecord] = []
    try:
        if forked:
            try:
                records += prefork.start(parts)
            except prefork.ForkFailed as exc:
                records += exc.records
                raise
        else:
            records += [spawn(part.name, part.argv, log=Path(part.log)) for part in parts]
        for record, listen in zip(records, listens, strict=True):

            def answers(record: ProcessRecord = record, listen: str = listen) -> bool:
                if not is_alive(record):
                    sys.exit(f"{record.name} exited: {log_tail(record, 5)}")
                return httpx.get(f"http://{listen}/v1/status", timeout=2).status_code == 200

            wait_for(answers, timeout=60, what=f"{record.name} to answer",
                     retry_on=httpx.TransportError)
        yield records
    finally:
        for record in records:
            stop(record)


def by_kind(parts: list[dict[str, Any]], watches: list[ProcessRecord]) -> dict[str, list[int]]:
    """Per kind of process: [how many, RSS bytes, PSS bytes]."""
    kinds: dict[str, list[int]] = {}
    rows = [(p["kind"], p["rss_bytes"], p["pss_bytes"]) for p in parts]
    rows += [("watch", *tree_memory(r)) for r in watches]
    for kind, rss, pss in rows:
        row = kinds.setdefault(kind, [0, 0, 0])
        row[0] += 1
        row[1] += rss
        row[2] += pss
    return kinds


def print_kinds(kinds: dict[str, list[int]]) -> None:
    """The memory table, the largest kind first, with the lab's total and the whole."""
    print(f"  {'kind':<10}{'n':>3}{'RSS MiB':>9}{'PSS MiB':>9}{'PSS each':>10}")
    for kind, (n, rss, pss) in sorted(kinds.items(), key=lambda k: -k[1][2]):
        print(f"  {kind:<10}{n:>3}{rss / MIB:>9.0f}{pss / MIB:>9.0f}{pss / n / MIB:>10.1f}")
    lab = sum(row[2] for kind, row in kinds.items() if kind != "watch")
    watch = kinds.get("watch", [0, 0, 0])
    print(f"  lab {lab / MIB:.0f} MiB PSS + {watch[0]} controllers {watch[2] / MIB:.0f} MiB "
          f"= {(lab + watch[2]) / MIB:.0f} MiB PSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--subnet", default="127.79")
    parser.add_argument("--dns-port", type=int, default=5399)
    parser.add_argument("--controllers", type=int, default=0,
                        help="controllers to start in each cycle, and print memory per kind")
    parser.add_argument("--forked", action="store_true",
                        help="fork the controllers from one parent (infra.lab.prefork)")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds the lab and controllers run before memory is read")
    parser.add_argument("--json", help="write the last cycle's memory per kind here")
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
            rss.append(status["memory_rss_bytes"] / MIB)
            pss.append(status["memory_pss_bytes"] / MIB)
            if args.controllers:
                with controllers(state_dir, args.controllers,
                                 args.forked) as watches:
                    time.sleep(args.settle)  # a benchmark's pacing: probes make their clients
                    status = json.loads(_cli("status", "--state-dir", str(state_dir),
                                             "--json").stdout)
                    kinds = by_kind(status["parts"], watches)
            t0 = time.monotonic()
            _cli("down", "--state-dir", str(state_dir))
            downs.append(time.monotonic() - t0)
            print(f"{cycle:>5} {ups[-1]:>7.2f} {downs[-1]:>7.2f} {rss[-1]:>8.0f} {pss[-1]:>8.0f}")
            if args.controllers:
                print_kinds(kinds)
                if args.json:
                    Path(args.json).write_text(json.dumps(kinds, indent=2) + "\n")
        print(f"{'median':>5} {statistics.median(ups):>7.2f} {statistics.median(downs):>7.2f} "
              f"{statistics.median(rss):>8.0f} {statistics.median(pss):>8.0f}")
        print(f"{'worst':>5} {max(ups):>7.2f} {max(downs):>7.2f} {max(rss):>8.0f} {max(pss):>8.0f}")
        print("up and down are wall times of the CLI (up includes its closing status probe); "
              "RSS and PSS are the idle lab's, as up reports them")
    finally:
        subprocess.run([sys.executable, "-m", "failover", "lab", "down", "--state-dir",
                        str(state_dir)], check=False, capture_output=True)
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
