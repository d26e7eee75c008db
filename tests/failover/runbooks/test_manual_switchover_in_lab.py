"""The planned switchover's manual fallback, run from its runbook, block by block, in a lab.

The runbook is rendered for this module's lab (127.83) as `failover runbook
render --state-dir` renders it; the code blocks under "By hand, without the
tool" are run in order with bash, as an operator would paste them, under a
writer that finds the app through the lab's DNS. The outcome is held to what
the tool's own switchover promises: one primary, the other site streaming
from it, DNS switched at every provider, no acknowledged write lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from failover.data.fencing import UNFENCED_SUFFIX
from failover.drill.workload import missing_posts
from failover.engine.deployment import open_deployment
from failover.engine.status import deployment_status
from failover.runbooks.files import lab_at, render_all
from failover.runbooks.render import manual_blocks
from infra.lab import agents
from infra.lab.postgres import HBA
from tests.conftest import RunningLab, own_lab
from tests.failover.engine.test_moves_in_lab import writer

pytestmark = pytest.mark.lab

SUBNET = "127.83"
BLOCK_TIMEOUT = 180.0  # seconds: the longest step's own timeout is 600, but the lab is small
TOOLS = ("bash", "psql", "curl", "jq", "dig", "nsupdate", "aws", "runuser")

lab = own_lab(SUBNET, "failover-test-runbooks-")


def shell_env(tmp_path: Path) -> dict[str, str]:
    """The environment the blocks run in: this venv's tools first, scratch files in tmp_path."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    missing = [t for t in TOOLS if shutil.which(t, path=path) is None]
    assert not missing, f"{', '.join(missing)} not installed: scripts/setup.sh installs them"
    return {**os.environ, "PATH": path, "TMPDIR": str(tmp_path)}


def run_block(block: str, number: int, env: dict[str, str], cwd: Path) -> None:
    """One code block with bash, stopping at its first failing command."""
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"block {number} did not end in {BLOCK_TIMEOUT:g}s:\n{block}\n"
                    f"{exc.stdout!r}\n{exc.stderr!r}")
    assert done.returncode == 0, (f"block {number} failed ({done.returncode}):\n{block}\n"
                                  f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")


def test_the_runbooks_manual_switchover_moves_the_primary_and_loses_no_write(
        lab: RunningLab, tmp_path: Path) -> None:
    root = lab.lab.paths.root
    blocks = manual_blocks(render_all(lab_at(root))["planned-switchover.md"])
    assert len(blocks) >= 10, blocks
    env = shell_env(tmp_path)
    w = writer(lab)
    w.start()
    try:
        w.wait_acks(20, timeout=30)
        for number, block in enumerate(blocks, 1):
            run_block(block, number, env, tmp_path)
        w.wait_acks(20, timeout=30)  # writes go on, at the new primary
    finally:
        log = w.stop()
    deployment = open_deployment(None, root)
    report = deployment_status(deployment)
    assert report["primary"] == "hetzner", report["warnings"]
    assert report["sites"]["aws"]["role"] == "standby"
    assert report["sites"]["aws"]["upstream"] == "hetzner"
    assert set(report["dns"]) == {"bind9", "route53"}
    for name, answer in report["dns"].items():
        assert answer["sites"] == ["hetzner"], (name, answer)
    assert report["healthy"], report["warnings"]
    # The old primary has its own pg_hba.conf back (not the fence, not the new primary's),
    # and its agent, thawed, runs its server again.
    assert lab.hba_file("aws").read_text() == HBA
    assert not Path(f"{lab.hba_file('aws')}{UNFENCED_SUFFIX}").exists()
    agent = agents.client(lab.layout, lab.lab.paths, "aws")
    try:
        assert agent.status(timeout=5)["role"] == "standby"
    finally:
        agent.close()
    acks = log.acked_posts()
    assert {a.address for a in acks} == {lab.layout.address(s) for s in ("aws", "hetzner")}
    ids = [a.id for a in acks if a.id]
    assert len(ids) >= 40
    app_db = replace(deployment.endpoint("hetzner"), dbname="social")
    assert missing_posts(app_db, ids) == []
