"""``failover watch`` as a real process in the lab of the moves: what it hears and does.

Each test starts the controller, gives it a signal (or a forged one), waits on
what it must do (a run in the journal, a proposal in its status), and stops
it by PID; a test that moved the primary moves it back by hand, with the
controller stopped, and checks that the lab is whole again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import yaml

from failover.drill.controller import DrillController
from failover.engine.deployment import Deployment, open_deployment
from failover.engine.executor import CRASH_AFTER_STEP
from failover.processes import is_alive
from failover.waiting import wait_for
from failover.watch.signals import Notice
from failover.watch.webhook import load_secret, sign, signal_body
from infra.lab import agents
from tests.conftest import RunningLab
from tests.failover.engine.test_moves_in_lab import assert_whole, failover
from tests.failover.watch.dovecot import Mailbox

pytestmark = pytest.mark.lab


@pytest.fixture
def lab(moves_lab: RunningLab) -> RunningLab:
    """The lab of the moves (shared; this module runs last there: it leaves a notice)."""
    return moves_lab


def deployment(lab: RunningLab) -> Deployment:
    return open_deployment(None, lab.lab.paths.root)


@contextmanager
def watching(lab: RunningLab, *args: str, env: dict[str, str] | None = None,
             name: str = "watch") -> Iterator[DrillController]:
    """A controller process for the length of a block, stopped by PID whatever happens."""
    controller = DrillController(deployment(lab), lab.lab.paths.logs / f"{name}.log")
    controller.start(args=args, env=env)
    try:
        yield controller
    finally:
        controller.stop()
        print(log_tails(controller))  # shown by pytest when a test fails


def log_tails(controller: DrillController, chars: int = 6000) -> str:
    """The end of each controller's log (one per site with a cluster, else one)."""
    return "\n".join(f"--- {m.log}\n{m.log.read_text()[-chars:]}" for m in controller.members
                     if m.log.exists())


def watched_well(controller: DrillController) -> dict[str, Any]:
    """Wait until every site's app has been seen from both vantage points."""
    def seen() -> dict[str, Any] | None:
        status = controller.status()
        apps = [look for site in status["sites"].values() for look in site["app"].values()]
        return status if apps and all(a is not None and a["status"] == "up"
                                      for a in apps) else None
    return wait_for(seen, timeout=20, what="the controller to see every app up", retry_on=())


def aws_notice(in_seconds: float, reference: str = "") -> Notice:
    """A notice for aws; each test gives its own deadline (without a reference, a notice is
    its provider and its exact deadline: an equal one would be the same notice)."""
    return Notice("aws", time.time() + in_seconds, "webhook", "contract terminated",
                  reference=reference)


def post(controller: DrillController, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{controller.url}/v1/signals", content=body,
                      headers={"Content-Type": "application/json", **headers}, timeout=5)


def move_back(lab: RunningLab) -> None:
    """Put aws back as the primary, by hand, with no controller running."""
    done = failover(lab, "switchover", "--to", "aws", "--yes")
    assert done.returncode == 0, done.stderr
    assert_whole(lab, "aws")


def switchovers_since(lab: RunningLab, t0: float) -> list[Any]:
    return [r for r in deployment(lab).journal.runs(50)
            if r.created >= t0 and r.plan.kind == "switchover"]


def lease_state(lab: RunningLab, site: str) -> str:
    """What the site's agent says of its lease: off, held or lapsed."""
    agent = agents.client(lab.layout, lab.lab.paths, site)
    try:
        return str(agent.status(timeout=5)["lease"]["state"])
    finally:
        agent.close()


def test_status_and_metrics_show_what_the_probes_see(lab: RunningLab) -> None:
    with watching(lab) as controller:
        status = watched_well(controller)
        assert status["primary"] == "aws"
        assert status["mode"] == "auto"
        assert set(status["sites"]) == {"aws", "hetzner"}
        assert set(status["sites"]["aws"]["app"]) == {"vantage-a", "vantage-b"}
        wait_for(lambda: controller.status()["sites"]["hetzner"]["role"] == "standby",
                 timeout=10, what="the standby's role", retry_on=())
        assert status["decisions"][-1]["sentence"].startswith("all well: primary aws")
        metrics = httpx.get(f"{controller.url}/metrics", timeout=5).text
        assert 'failover_probe_up{kind="http",target="aws",vantage="vantage-b"} 1.0' in metrics
        assert "failover_probe_seconds_bucket" in metrics
        assert "failover_cycles_total" in metrics
        # The controller keeps the primary's lease; the standby holds none.
        wait_for(lambda: lease_state(lab, "aws") == "held", timeout=10,
                 what="aws's lease to be held", retry_on=())
        assert lease_state(lab, "hetzner") == "off"
    # Stopped on purpose, a controller that renews the lease turns it off: the primary must
    # not fence itself. An agent that holds it in etcd (watch.cluster.agent_leases) holds
    # it on: the decision there still names aws.
    cluster = deployment(lab).config.watch.cluster
    agents_hold = cluster is not None and cluster.agent_leases
    assert lease_state(lab, "aws") == ("held" if agents_hold else "off")


def test_a_notice_heard_twice_moves_once(lab: RunningLab) -> None:
    t0 = time.time()
    with watching(lab) as controller:
        watched_well(controller)
        notice = aws_notice(120, "ticket-1")
        assert controller.signal(notice)["new"] is True
        # The same notice again, by hand this time (another path, signed anew).
        deadline = datetime.fromtimestamp(notice.deadline, UTC).isoformat()
        again = failover(lab, "signal", "termination", "--provider", "aws", "--deadline",
                         deadline, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["new"] is False
        later = aws_notice(240, "ticket-2")  # a second notice, another deadline
        assert controller.signal(later)["new"] is True
        run = controller.await_run(t0, ("switchover",), timeout=90)
        assert run is not None and run.outcome == "ok", run and run.error
        decision = controller.first_decision(t0)
        assert decision is not None and decision["action"] == "start"
        assert "aws ends service" in decision["sentence"]
        status = controller.status()
        assert status["primary"] == "hetzner"
        assert status["notices"] == []  # both answered by the move
    assert len(switchovers_since(lab, t0)) == 1
    assert_whole(lab, "hetzner")  # the next test moves it back, through the controller


def test_a_controller_killed_mid_move_resumes_it(lab: RunningLab) -> None:
    t0 = time.time()
    crash = {CRASH_AFTER_STEP: "promote"}
    with watching(lab, env=crash, name="watch-crash") as controller:
        watched_well(controller)
        # hetzner is the primary now (the test before): its provider's notice.
        controller.signal(Notice("hetzner", time.time() + 1000, "webhook", "ends"))
        record = controller.record
        assert record is not None
        wait_for(lambda: not is_alive(record), timeout=90,
                 what="the controller to die after its promote step", retry_on=())
    interrupted = switchovers_since(lab, t0)
    assert len(interrupted) == 1 and interrupted[0].outcome == "interrupted"
    with watching(lab, name="watch-resume") as controller:
        run = controller.await_run(t0, ("switchover",), timeout=90)
        assert run is not None and run.id == interrupted[0].id
        assert run.outcome == "ok", run.error
        sentences = [d["sentence"] for d in controller.status()["decisions"]]
        assert any("was interrupted; resuming it" in s for s in sentences), sentences
    assert_whole(lab, "aws")


def test_approve_mode_waits_for_failover_approve(lab: RunningLab) -> None:
    t0 = time.time()
    with watching(lab, "--mode", "approve", name="watch-approve") as controller:
        watched_well(controller)
        controller.signal(aws_notice(2000))

        def proposed() -> dict[str, Any] | None:
            moves = controller.status()["moves"]
            return next((m for m in moves if m["state"] == "proposed"), None)

        move = wait_for(proposed, timeout=20, what="a proposed move", retry_on=())
        assert switchovers_since(lab, t0) == []  # nothing runs unapproved
        done = failover(lab, "approve", move["id"], "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["state"] == "approved"
        again = failover(lab, "approve", move["id"])
        assert again.returncode != 0 and "not waiting for approval" in again.stderr
        run = controller.await_run(t0, ("switchover",), timeout=90)
        assert run is not None and run.outcome == "ok", run and run.error
    move_back(lab)


def test_forged_stale_replayed_and_unsigned_signals_are_refused(lab: RunningLab) -> None:
    secret = load_secret(deployment(lab).config.watch)
    # A notice for the standby's provider: accepted, it moves nothing. (Last in
    # the module: a pending notice for hetzner would move a primary back there.)
    body = signal_body(Notice("hetzner", time.time() + 86400, "webhook", "test"))
    t0 = time.time()
    with watching(lab) as controller:
        watched_well(controller)
        refused = {
            "unsigned": post(controller, body, {}),
            "forged": post(controller, body, sign(b"not the secret", body)),
            "tampered": post(controller, body.replace(b"hetzner", b"aws"), sign(secret, body)),
            "stale": post(controller, body, sign(secret, body, time.time() - 3600)),
        }
        for what, response in refused.items():
            assert response.status_code == 401, (what, response.text)
            assert response.json()["reason"], what
        good = sign(secret, body)
        first = post(controller, body, good)
        assert first.status_code == 202, first.text
        assert first.json()["new"] is True
        replayed = post(controller, body, good)
        assert replayed.status_code == 401 and replayed.json()["reason"] == "replayed"
        malformed = b'{"type": "termination", "provider": "nowhere"}'
        bad = post(controller, malformed, sign(secret, malformed))
        assert bad.status_code == 400
        status = controller.status()
        assert [n["provider"] for n in status["notices"]] == ["hetzner"]
        assert status["moves"] == []
        metrics = httpx.get(f"{controller.url}/metrics", timeout=5).text
        assert 'failover_signals_refused_total{reason="replayed"} 1.0' in metrics
    assert switchovers_since(lab, t0) == []


def test_a_termination_letter_in_the_mailbox_is_proposed_for_a_person(
        lab: RunningLab, mailbox: Mailbox) -> None:
    # Last in the module: the proposal it leaves stays pending.
    root = lab.lab.paths.root
    config = yaml.safe_load((root / "failover.yaml").read_text())
    config["watch"]["mailbox"] = {"host": mailbox.host, "port": mailbox.port, "tls": False,
                                  "user": mailbox.user,
                                  "password_file": str(mailbox.password_file), "interval": 0.5}
    path = root / "failover-mailbox.yaml"  # beside the lab's: its relative paths hold
    path.write_text(yaml.safe_dump(config))
    mailbox.append(
        b"From: AWS Trust & Safety <no-reply@aws.amazon.com>\r\n"
        b"To: ops@example.com\r\n"
        b"Subject: Your AWS account will be terminated\r\n"
        b"Message-ID: <termination-1@aws.amazon.com>\r\n"
        + f"Date: {formatdate(usegmt=True)}\r\n\r\n".encode()
        + b"Your AWS account will be terminated within 2 hours.\r\n")
    t0 = time.time()
    controller = DrillController(open_deployment(path, None), lab.lab.paths.logs / "mail.log")
    controller.start()
    try:
        def proposed() -> dict[str, Any] | None:
            moves = controller.status()["moves"]
            return next((m for m in moves if m["state"] == "proposed"), None)

        move = wait_for(proposed, timeout=30, what="the letter's move to be proposed",
                        retry_on=())
        assert move["needs_approval"] and move["kind"] == "switchover"
        assert "mailbox notice" in move["reason"] and "aws ends service" in move["reason"]
        notices = controller.status()["notices"]  # (the forged-signal test left hetzner's)
        assert [(n["provider"], n["source"]) for n in notices
                if n["provider"] == "aws"] == [("aws", "mailbox")]
        assert mailbox.unseen() == 0  # read, and marked so
        assert switchovers_since(lab, t0) == []  # a letter alone moves nothing
    finally:
        controller.stop()
        print(log_tails(controller))  # shown by pytest when the test fails
