"""Benchmark: a total loss with a 1 GB database and 10,000 objects, rebuilt at the spare site.

On a scratch lab (its own state dir and subnet, so a user's lab is untouched):

1. load the primary (aws): a table of about 1 GB of random text in the app's
   database, and 10,000 objects of 10 KiB in its bucket;
2. wait until the continuous copies have put every object in the spare's
   store, and take a full backup (``failover backup now --type full``);
3. run ``failover drill --scenario total-loss``: a workload writes through
   DNS, aws and hetzner are killed with their object stores, and the spare
   is rebuilt from its own provider's repository;
4. print each phase's time (provision, restore, objects, app, DNS), the RTO
   measured from the clients, and the writes and media lost against the
   archive's age at the fault.

Not a test: run it by hand (as root, like the lab), e.g.
``.venv/bin/python tests/perf/bench_rebuild.py``. About 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from failover.config import load_config
from failover.data.objects import s3_client
from failover.data.postgres import PgEndpoint


def cli(state_dir: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """The failover CLI against the scratch lab; exits on failure with its stderr."""
    done = subprocess.run([sys.executable, "-m", "failover", *args], capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "FAILOVER_STATE_DIR": str(state_dir)})
    if done.returncode not in (0, 3):  # 3: done with warnings
        sys.exit(f"failover {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def load_database(endpoint: PgEndpoint, gigabytes: float) -> float:
    """Fill a ballast table with random text; the seconds it took."""
    rows = int(gigabytes * 1024**3 / 1050)
    t0 = time.monotonic()
    with endpoint.connect(timeout=10) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_ballast")
        conn.execute("CREATE TABLE bench_ballast (id bigint PRIMARY KEY, pad text)")
        batch = 100_000
        for start in range(0, rows, batch):
            # 28 random UUIDs a row: about 1 KB that compresses no better than hex does.
            conn.execute(
                "INSERT INTO bench_ballast SELECT g, (SELECT string_agg(gen_random_uuid()::text,"
                " '') FROM generate_series(1, 28) WHERE g > 0) FROM generate_series(%s, %s) g",
                (start + 1, min(rows, start + batch)))
            print(f"  database: {min(rows, start + batch):,} of {rows:,} rows", flush=True)
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    print(f"  database size {size[0] / 2**30:.2f} GiB" if size else "")
    return time.monotonic() - t0


def load_objects(store: Any, count: int, size: int) -> float:
    """Put ``count`` random objects of ``size`` bytes; the seconds it took."""
    client = s3_client(store, max_connections=16)
    t0 = time.monotonic()

    def put(i: int) -> None:
        client.put_object(Bucket=store.bucket, Key=f"bench/{i:06d}",
                          Body=secrets.token_bytes(size))

    with ThreadPoolExecutor(16) as pool:
        for done, _ in enumerate(pool.map(put, range(count)), start=1):
            if done % 2000 == 0:
                print(f"  objects: {done:,} of {count:,}", flush=True)
    return time.monotonic() - t0


def wait_copied(state_dir: Path, target: str, timeout: float = 1800) -> float:
    """Wait until a pass of the primary's copies left nothing missing at ``target``; the
    seconds waited (the lag itself then says how far apart the passes are)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        status = json.loads(cli(state_dir, "status", "--json").stdout or "{}")
        copies = ((status.get("sites", {}).get("aws", {}).get("objects") or {})
                  .get(target, {}))
        if copies.get("lag_seconds") is not None and copies.get("pending") == 0:
            print(f"  copies to {target}: lag {copies['lag_seconds']:.1f}s, "
                  f"{copies.get('copied')} copied", flush=True)
            return time.monotonic() - t0
        time.sleep(5)
    sys.exit(f"objects did not reach {target} in {timeout:g}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--object-bytes", type=int, default=10 * 1024)
    parser.add_argument("--subnet", default="127.78")
    parser.add_argument("--dns-port", type=int, default=5398)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="failover-bench-rebuild-"))
    state_dir.chmod(0o755)
    try:
        print("lab up ...", flush=True)
        cli(state_dir, "lab", "up", "--subnet", args.subnet, "--dns-port", str(args.dns_port))
        config = load_config(state_dir / "failover.yaml")
        aws = config.site("aws")
        endpoint = PgEndpoint(aws.database.host, aws.database.port, aws.database.user,
                              aws.database.app_dbname, passfile=str(aws.database.passfile))
        figures: dict[str, float] = {}
        figures["load_database_s"] = load_database(endpoint, args.gigabytes)
        figures["load_objects_s"] = load_objects(aws.objects, args.objects, args.object_bytes)
        print("waiting for the copies to reach the spare's store ...", flush=True)
        figures["copies_caught_up_s"] = wait_copied(state_dir, "spare")
        t0 = time.monotonic()
        cli(state_dir, "backup", "now", "--type", "full")
        figures["full_backup_s"] = time.monotonic() - t0
        backups = json.loads(cli(state_dir, "backup", "status", "--json").stdout)
        report_file = state_dir / "total-loss.json"
        print("drill total-loss ...", flush=True)
        cli(state_dir, "drill", "--scenario", "total-loss", "--yes", "--json", str(report_file))
        report = json.loads(report_file.read_text())
        print_results(args, figures, backups, report)
    finally:
        if not args.keep:
            subprocess.run([sys.executable, "-m", "failover", "lab", "down", "--state-dir",
                            str(state_dir)], check=False, capture_output=True)
            shutil.rmtree(state_dir, ignore_errors=True)


def print_results(args: argparse.Namespace, figures: dict[str, float],
                  backups: dict[str, Any], report: dict[str, Any]) -> None:
    """The figures, the repositories and the drill's phases."""
    print(f"\nbench_rebuild: {args.gigabytes:g} GB, {args.objects:,} objects of "
          f"{args.object_bytes:,} bytes")
    for name, seconds in figures.items():
        print(f"  {name:<22} {seconds:8.1f} s")
    for repo in backups.get("repositories", []):
        full = repo.get("last_full") or {}
        print(f"  repository {repo['name']:<10} full backup {full.get('bytes', 0) / 2**30:.2f} "
              f"GiB, {full.get('repository_bytes', 0) / 2**30:.2f} GiB stored")
    print(f"  drill: {'PASS' if report.get('objectives_met') else 'FAIL'}, RTO "
          f"{report.get('rto_seconds')} s")
    for step in report.get("steps", []):
        print(f"    {step.get('action', '?'):<18} {step.get('seconds')} s")
    print(f"  writes: {report.get('acked_writes')} acked, {report.get('lost_writes')} lost; "
          f"media: {report.get('acked_media')} acked, {report.get('lost_media')} lost")
    for verdict in report.get("verdicts", []):
        print(f"    {verdict}")
    for note in report.get("notes", []):
        print(f"  {note}")


if __name__ == "__main__":
    main()
