"""The run journal and the run lock, one contract for both kinds: SQLite files and etcd.

Every case runs against the file (``Journal``, a lock file) and etcd
(``EtcdJournal``, the ``runlock`` key, three real members, marked lab).
Journal objects with tokens 5 and 6 stand for a deposed leader and the new
one; a child process (``state_child``) is a controller at another site.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from failover.cluster.runlock import RUN_LOCK_KEY
from failover.config import FailoverConfig, load_config
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan, Step
from failover.exceptions import ConfigError, StaleToken
from failover.state import RunBusy, RunJournal, cluster_client, run_lock, run_lock_held
from failover.waiting import wait_for
from infra.lab import etcd
from tests.failover.cluster.state_child import open_journal
from tests.failover.handbuilt import lab_files

KINDS = ["sqlite", pytest.param("etcd", marks=pytest.mark.lab)]
LOCK_TTL = 3  # seconds the etcd run lock outlives a holder that died
REPOSITORY = Path(__file__).resolve().parents[3]  # where `python -m tests...` finds them


def plan() -> Plan:
    return Plan("switchover", "aws", "hetzner", (
        Step("check_switchover", "look", {"from": "aws"}, 5, retry=True, changes=False),
        Step("fence", "fence aws", {"site": "aws"}, 5),
        Step("promote", "promote hetzner", {"site": "hetzner"}, 5),
    ))


def fixed(token: int | None) -> Callable[[], int | None]:
    return lambda: token


@pytest.fixture(params=KINDS)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The journal, as ``state_child.open_journal`` names it."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'journal.sqlite'}"
    members = request.getfixturevalue("members")
    return f"etcd:journal-{uuid.uuid4().hex[:8]}:{','.join(etcd.endpoints(members.layout))}"


def events(journal: RunJournal, run_id: str) -> list[tuple[int | None, str, str]]:
    return [(e.step, e.action, e.event) for e in journal.run(run_id).events]


def test_a_run_is_journaled_step_by_step_and_read_back(spec: str) -> None:
    journal = open_journal(spec)
    first = journal.begin(plan())
    journal.step_started(first, 0, "check_switchover")
    journal.step_ended(first, 0, "check_switchover", "ok", result={"lag": 0})
    journal.step_started(first, 1, "fence")
    journal.step_ended(first, 1, "fence", "failed", error="no answer")
    journal.ended(first, "failed", "step fence failed: no answer")
    second = journal.begin(plan())

    reader = open_journal(spec)  # another process's view
    run = reader.run(first)
    assert (run.outcome, run.error, run.plan) == ("failed", "step fence failed: no answer",
                                                  plan())
    assert [(s.outcome, s.attempts, s.result) for s in run.steps()] == [
        ("ok", 1, {"lag": 0}), ("failed", 1, {}), (None, 0, {})]
    assert run.steps()[1].error == "no answer"
    assert [r.id for r in reader.runs()] == [second, first]
    assert [r.id for r in reader.runs(limit=1)] == [second]
    last = reader.last()
    assert last is not None and last.id == second and last.outcome == "interrupted"
    for unknown in ("20990101-000000-abcdef", "../" + first, ""):
        with pytest.raises(ConfigError, match="no run"):
            reader.run(unknown)


def test_a_deposed_leaders_late_writes_are_refused_and_change_nothing(spec: str) -> None:
    old, new = open_journal(spec, fixed(5)), open_journal(spec, fixed(6))
    run_id = old.begin(plan())
    old.step_started(run_id, 1, "fence")
    assert old.newest_token() == 5
    new.resumed(run_id)  # the new leader takes the run over
    before = events(new, run_id)

    with pytest.raises(StaleToken, match="token 5 is older than 6"):
        old.step_ended(run_id, 1, "fence", "ok")  # the old leader's late step result
    with pytest.raises(StaleToken):
        old.ended(run_id, "ok")
    with pytest.raises(StaleToken):
        old.begin(plan())
    assert events(new, run_id) == before
    assert [r.id for r in new.runs()] == [run_id]
    assert new.newest_token() == 6

    new.step_ended(run_id, 1, "fence", "ok")  # the same leader again: equal passes
    open_journal(spec).ended(run_id, "abandoned", "by hand")  # tokenless: a lone CLI's
    assert new.run(run_id).outcome == "abandoned"


def test_two_leaders_writing_at_once_never_interleave_after_the_newer_ones_first(
        spec: str) -> None:
    old, new = open_journal(spec, fixed(5)), open_journal(spec, fixed(6))
    run_id = old.begin(plan())
    start = threading.Barrier(2)
    refused: list[StaleToken] = []

    def deposed() -> None:
        start.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                old.step_started(run_id, 0, "old")
            except StaleToken as exc:
                refused.append(exc)
                return

    thread = threading.Thread(target=deposed)
    thread.start()
    start.wait()
    for _ in range(10):
        new.step_started(run_id, 0, "new")
    thread.join()

    actions = [action for _, action, _ in events(new, run_id)][1:]  # after the run's start
    assert refused and actions.count("new") == 10
    first_new = actions.index("new")
    assert "old" not in actions[first_new:], actions


def test_a_run_is_resumed_once_by_another_process_and_the_old_leader_is_fenced(
        spec: str) -> None:
    old = open_journal(spec, fixed(5))
    run_id = old.begin(plan())
    old.step_started(run_id, 0, "check_switchover")
    old.step_ended(run_id, 0, "check_switchover", "ok")
    old.step_started(run_id, 1, "fence")  # ... and its site went dark

    child = subprocess.run([sys.executable, "-m", "tests.failover.cluster.state_child",
                            "resume", spec, "6"], capture_output=True, text=True, timeout=60,
                           cwd=REPOSITORY)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == run_id

    with pytest.raises(StaleToken):  # the old leader comes back and reports its step
        old.step_ended(run_id, 1, "fence", "ok")
    run: RunRecord = open_journal(spec).run(run_id)
    assert run.outcome == "ok" and run.done() == {0, 1, 2}
    assert [(s.attempts, s.result) for s in run.steps()] == [
        (1, {}), (2, {"by": "child"}), (1, {"by": "child"})]
    assert sum(1 for e in run.events if e.step is None and e.event == "start") == 2


# -- the run lock ---------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FailoverConfig]:
    """A deployment whose run lock is a file (no cluster) or in etcd."""
    root = lab_files(tmp_path / "lab")
    if request.param == "etcd":
        members = request.getfixturevalue("members")
        data = yaml.safe_load((root / "failover.yaml").read_text())
        data["watch"]["cluster"] = {
            "endpoints": etcd.endpoints(members.layout), "name": f"lock-{uuid.uuid4().hex[:8]}",
            "ttl": LOCK_TTL, "loop_wait": 0.5, "retry_timeout": 1.0}
        (root / "failover.yaml").write_text(yaml.safe_dump(data))
    yield load_config(root / "failover.yaml")


def test_one_run_at_a_time_and_a_holder_that_dies_lets_go(config: FailoverConfig) -> None:
    config_file = str(config.journal.parent / "failover.yaml")
    with run_lock(config, "here"):
        assert run_lock_held(config, "here")
        with pytest.raises(RunBusy, match="another failover run is in progress"), \
                run_lock(config, "again"):
            pass
    assert not run_lock_held(config, "here")

    holder = subprocess.Popen([sys.executable, "-m", "tests.failover.cluster.state_child",
                               "hold", config_file], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPOSITORY)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert run_lock_held(config, "here")
        with pytest.raises(RunBusy), run_lock(config, "here"):
            pass
        holder.kill()  # killed mid-run: nothing is released on purpose
        holder.wait(timeout=10)
        # A holder of this host that died holds nothing: the same command goes on at once
        # (in etcd its key would otherwise outlive it by the lock's TTL).
        assert not run_lock_held(config, "here")
        with run_lock(config, "here"):
            assert run_lock_held(config, "here")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    with run_lock(config, "here"):
        assert run_lock_held(config, "here")


@pytest.mark.parametrize("config", [pytest.param("etcd", marks=pytest.mark.lab)],
                         indirect=True)
def test_a_holder_elsewhere_that_goes_dark_lets_go_within_the_ttl(
        config: FailoverConfig) -> None:
    assert config.watch.cluster is not None
    cluster = cluster_client(config.watch.cluster)
    # What a holder at another site leaves when its site goes dark: its key, on its lease.
    held = json.dumps({"holder": "elsewhere pid 1", "since": time.time(), "host": "elsewhere",
                       "pid": 1})
    assert cluster.create(RUN_LOCK_KEY, held, cluster.grant(LOCK_TTL)).succeeded
    with pytest.raises(RunBusy, match="elsewhere pid 1"), run_lock(config, "here"):
        pass
    wait_for(lambda: not run_lock_held(config, "here"), timeout=LOCK_TTL + 10,
             what="the dark holder's run lock to go", retry_on=(), interval=0.2)
    with run_lock(config, "here"):
        assert run_lock_held(config, "here")
