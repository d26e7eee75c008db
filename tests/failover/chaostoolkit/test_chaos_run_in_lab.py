"""``chaos run`` (the real Chaos Toolkit) over an exported drill, in a lab of this module's own.

The experiment is exported as a user would (``failover drill export``, the lab
named by $FAILOVER_STATE_DIR where it runs), run by the ``chaos`` console
script, and judged by its journal: the steady state met before and after the
fault, the method's drill measured, the rollback run. The lab must be whole
after (the primary back at aws, hetzner streaming from it), the drill kept in
the history, and ``failover evidence`` must then report it, with its chart.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from failover.drill.history import DrillHistory, history_path
from failover.engine.deployment import open_deployment
from failover.waiting import wait_for
from tests.conftest import RunningLab, own_lab
from tests.failover.engine.test_moves_in_lab import assert_whole, failover

pytestmark = pytest.mark.lab

CHAOS = Path(sys.executable).with_name("chaos")
# The notice leaves room for a move slowed by a loaded machine (seen: 20.6 s on two cores).
QUICK = ("--notice", "30", "--warmup", "2", "--settle", "1", "--rate", "20")

lab = own_lab("127.85", "failover-test-chaos-")


def chaos(lab: RunningLab, experiment: Path, out: Path) -> subprocess.Popen[str]:
    """``chaos run`` started as a user starts it, its log and journal in ``out``."""
    command = [str(CHAOS), "--no-version-check", "--log-file", str(out / "chaostoolkit.log"),
               "--settings", str(out / "settings.yaml"), "run", "--journal-path",
               str(out / "journal.json"), str(experiment)]
    env = {**os.environ, "FAILOVER_STATE_DIR": str(lab.lab.paths.root),
           "PYTHONFAULTHANDLER": "1"}
    # Ctrl-C as at a terminal: a run started in the background by a non-interactive shell
    # (CI's, say) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL, cwd=out, env=env,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ended(process: subprocess.Popen[str], out: Path,
          timeout: float = 420) -> tuple[str, dict[str, Any]]:
    """What ``chaos run`` printed, and its journal, once it has ended.

    A run that outlives ``timeout`` is sent SIGTERM (the experiment is then
    interrupted and its rollback puts the lab back) and, if it still runs,
    SIGABRT, so that Python's fault handler shows where it hung.
    """
    with process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                output, _ = process.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGABRT)
                output, _ = process.communicate()
            pytest.fail(f"chaos run did not end in {timeout:g}s:\n{output[-8000:]}")
    journal = out / "journal.json"
    assert journal.exists(), output[-8000:]
    return output, json.loads(journal.read_text())


def export(lab: RunningLab, scenario: str, out: Path, *options: str) -> Path:
    """``failover drill export`` of a short drill of ``scenario``, as a user runs it."""
    experiment = out / f"{scenario}.json"
    exported = failover(lab, "drill", "export", "--format", "chaostoolkit", scenario, *QUICK,
                        *options, "--out", str(experiment))
    assert exported.returncode == 0, exported.stderr
    return experiment


def logs(lab: RunningLab, *parts: str) -> str:
    """The last lines of the lab's logs of ``parts``, for a failure's message."""
    tails = []
    for part in parts:
        path = lab.lab.paths.log(part)
        lines = path.read_text(errors="replace").splitlines()[-30:] if path.exists() else []
        tails.append(f"--- {part}\n" + "\n".join(lines))
    return "\n".join(tails)


def probes(state: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """A steady-state check's probes: name -> (status, output)."""
    return {p["activity"]["name"]: (p["status"], p["output"]) for p in state["probes"]}


@pytest.mark.timeout(720)  # the lab's start, a drill with a 20 s notice, the move back
def test_chaos_run_of_an_exported_drill_passes_and_puts_the_lab_back(lab: RunningLab,
                                                                      tmp_path: Path) -> None:
    out = tmp_path
    experiment = export(lab, "termination-notice", out)
    started = datetime.now(UTC)

    process = chaos(lab, experiment, out)
    output, journal = ended(process, out)
    tail = output[-6000:]
    assert process.returncode == 0, tail
    assert (journal["status"], journal["deviated"]) == ("completed", False), tail
    before, after = journal["steady_states"]["before"], journal["steady_states"]["after"]
    assert before["steady_state_met"] and after["steady_state_met"], (before, after)
    # After the fault the figures are the drill's, not the zeros of before it.
    assert probes(after)["deployment-whole"] == ("succeeded", True)
    status, rto = probes(after)["rto_seconds-within-objective"]
    assert status == "succeeded" and 0 < rto <= 15.0
    assert probes(after)["rpo_writes-within-objective"] == ("succeeded", 0)
    (method,) = journal["run"]
    assert method["status"] == "succeeded", method
    drill = method["output"]
    assert (drill["from_site"], drill["to_site"]) == ("aws", "hetzner")
    assert drill["objectives_met"] and drill["lost_writes"] == 0 and drill["acked_writes"] > 0
    assert drill["rto_seconds"] == rto
    (rollback,) = journal["rollbacks"]
    assert rollback["status"] == "succeeded", (rollback, logs(lab, "postgres@hetzner",
                                                               "agent@hetzner"))
    assert rollback["output"] == "switchover hetzner -> aws ok"
    assert_whole(lab, "aws")

    # Kept in the history as the experiment's, with its reports on disk.
    deployment = open_deployment(None, lab.lab.paths.root)
    (entry,) = DrillHistory(history_path(deployment.config.journal)).entries(since=started)
    assert (entry.id, entry.trigger, entry.outcome) == (drill["drill"], "chaostoolkit",
                                                        "passed")
    assert entry.report_dir is not None
    assert (Path(entry.report_dir) / "report.json").exists()

    # The evidence, written after the drill, reports it with its chart.
    evidence = out / "evidence"
    written = failover(lab, "evidence", "--since", f"{started:%Y-%m-%d}", "--out",
                       str(evidence))
    assert written.returncode == 0, written.stderr
    stem = f"exit-plan-evidence-{datetime.now(UTC):%Y-%m-%d}"
    markdown = (evidence / f"{stem}.md").read_text()
    assert f"| termination-notice | chaostoolkit | PASS | {rto:.1f} s |" in markdown, markdown
    png = (evidence / f"{stem}.png").read_bytes()
    html = (evidence / f"{stem}.html").read_text()
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert embedded is not None and base64.b64decode(embedded.group(1)) == png


@pytest.mark.timeout(600)
def test_an_interrupted_run_still_rolls_back_and_the_lab_is_whole(lab: RunningLab,
                                                                   tmp_path: Path) -> None:
    """Ctrl-C once the controller has moved the primary: chaos marks the run interrupted,
    and still plays the rollback, which moves it home (the experiment asks for rollbacks
    always: chaostoolkit#176, #195)."""
    out = tmp_path
    started = datetime.now(UTC)
    # A long settle after the recovery: the window in which the interruption lands.
    process = chaos(lab, export(lab, "db-primary-crash", out, "--settle", "20"), out)
    log = out / "chaostoolkit.log"

    def moved() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"chaos run ended before the move (status {process.poll()})")
        return log.exists() and "controller: promote aws -> hetzner: ok" in log.read_text()

    try:
        wait_for(moved, timeout=180, interval=0.2, retry_on=(),
                 what="the controller's promote in the chaos log")
    finally:
        process.send_signal(signal.SIGINT)  # whatever happened: the run must end
    output, journal = ended(process, out)
    assert journal["steady_states"]["before"]["steady_state_met"], output[-6000:]
    assert journal["status"] == "interrupted", output[-6000:]
    assert journal["steady_states"]["after"] is None  # not judged: the method never ended
    (rollback,) = journal["rollbacks"]
    assert rollback["status"] == "succeeded", (rollback, output[-6000:],
                                               logs(lab, "postgres@hetzner", "agent@hetzner"))
    assert rollback["output"] == "switchover hetzner -> aws ok"
    assert_whole(lab, "aws")
    # Kept as a drill that broke: no figures, but put back.
    deployment = open_deployment(None, lab.lab.paths.root)
    (entry,) = DrillHistory(history_path(deployment.config.journal)).entries(since=started)
    assert (entry.scenario, entry.trigger, entry.outcome) == ("db-primary-crash",
                                                              "chaostoolkit", "error")
    assert entry.error is not None and "KeyboardInterrupt" in entry.error
