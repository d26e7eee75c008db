"""Benchmark: the controller watches a healthy lab under load and must do nothing.

Starts a lab on a scratch subnet (or uses a running one with ``--state-dir``),
the drill's workload (4 users through DNS), and a real ``failover watch``;
lets them run for ``--minutes``, then asks the controller and the journal
what happened. A false failover is any decision to act or any run begun.
Also reported: the controller's own probe figures (looks, skipped slots,
lateness), how many single looks failed (noise the hysteresis absorbed), and
the workload's errors. Not a test: run by hand, e.g.
``.venv/bin/python tests/perf/bench_quiet.py --minutes 10 --json /tmp/quiet.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from failover.drill.controller import ACTING, DrillController
from failover.drill.resolver import CachingResolver
from failover.drill.workload import Workload, WorkloadSpec
from failover.engine.deployment import open_deployment
from tests.conftest import running_lab

FAILED_LOOKS = re.compile(r'^failover_probe_looks_total\{kind="(\w+)",status="(down|refused)"'
                          r',target="(\w+)"\} (\S+)$', re.M)


@contextmanager
def a_lab(state_dir: str | None, subnet: str) -> Iterator[Path]:
    if state_dir:
        yield Path(state_dir)
        return
    with running_lab(subnet, "failover-bench-quiet-") as lab:
        yield lab.lab.paths.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--subnet", default="127.82")
    parser.add_argument("--state-dir", help="a running lab to use instead of a new one")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    with a_lab(args.state_dir, args.subnet) as root:
        deployment = open_deployment(None, root)
        name = deployment.records("aws")[0].name
        servers = [(p.server, p.port) for p in deployment.config.dns_providers.values()
                   if p.kind == "rfc2136"]
        workload = Workload(WorkloadSpec(), lambda: CachingResolver(name, servers),
                            port=8080, host_header=name.rstrip("."))
        controller = DrillController(deployment, root / "logs" / "watch-quiet.log")
        print(controller.start())
        t0 = time.time()
        workload.start()
        try:
            end = t0 + args.minutes * 60
            while (left := end - time.time()) > 0:
                time.sleep(min(60.0, left))  # a benchmark's pacing, not a test's wait
                status = controller.status()
                print(f"[{(time.time() - t0) / 60:5.1f} min] {status['decisions'][-1]['sentence']}"
                      f" | probes {status['probes']}", flush=True)
            status = controller.status()
            metrics = httpx.get(f"{controller.url}/metrics", timeout=5).text
        finally:
            log = workload.stop()
            print(controller.stop())
        acting = [d for d in status["decisions"] if d["action"] in ACTING]
        runs = [r.id for r in deployment.journal.runs(50) if r.created >= t0]
        failed_looks: dict[str, float] = {}
        for kind, state, target, count in FAILED_LOOKS.findall(metrics):
            key = f"{kind} {target} {state}"
            failed_looks[key] = failed_looks.get(key, 0.0) + float(count)
        figures: dict[str, Any] = {
            "minutes": args.minutes, "false_failovers": len(acting) + len(runs),
            "acting_decisions": acting, "runs": runs, "probes": status["probes"],
            "failed_single_looks": failed_looks,
            "workload": {"requests": len(log.snapshot()),
                         "acked_writes": len(log.acked_posts()) + len(log.acked_media()),
                         "errors": log.failures_by_cause()},
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        sys.exit(1 if figures["false_failovers"] else 0)


if __name__ == "__main__":
    main()
