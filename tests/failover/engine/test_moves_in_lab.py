"""Switchover, emergency promote, resume and refusals, end to end in the lab of the moves.

The tests run in file order and each leaves the lab whole (one primary, one
streaming standby); each finds the current primary rather than assuming it.
The drills and the controller's tests share the lab (``moves_lab``), so the
journal may hold their runs: "nothing ran" is the last run left unchanged.
Commands run as the user runs them, through ``python -m failover``, so exit
codes and a real kill -9 are what is tested.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover.config import CONFIG_FILE_NAME
from failover.configpaths import resolve_paths
from failover.data.fencing import fence, unfence
from failover.data.postgres import PgEndpoint
from failover.drill.resolver import CachingResolver
from failover.drill.workload import Workload, WorkloadSpec, missing_posts
from failover.engine.deployment import open_deployment
from failover.engine.executor import CRASH_AFTER_STEP, unfinished_run
from failover.waiting import wait_for
from infra.lab import agents
from tests.conftest import RunningLab, free_port

pytestmark = pytest.mark.lab

OTHER = {"aws": "hetzner", "hetzner": "aws"}


@pytest.fixture
def lab(moves_lab: RunningLab) -> RunningLab:
    """The lab of the moves: the tests move its primary back and forth.

    A run left unfinished by a test that failed is abandoned first, so that one
    failure does not refuse every later move ("finish it first").
    """
    deployment = open_deployment(None, moves_lab.lab.paths.root)
    left = unfinished_run(deployment)
    if left is not None:
        deployment.journal.ended(left.id, "abandoned", "left unfinished by a failed test")
    return moves_lab


def failover(lab: RunningLab, *args: str, env: dict[str, str] | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the CLI against the lab, as a user would.

    A command that outlives ``timeout`` is stopped with SIGABRT: Python's fault
    handler then prints where each thread was, and the failure shows it.
    """
    command = [sys.executable, "-m", "failover", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "FAILOVER_STATE_DIR": str(lab.lab.paths.root),
             "PYTHONFAULTHANDLER": "1", **(env or {})},
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            stdout, stderr = process.communicate()
            hosts = lab.log_tails(*(f"{part}@{site}" for site in OTHER
                                    for part in ("agent", "postgres")))
            pytest.fail(f"{' '.join(args)} did not end in {timeout:g}s; "
                        f"its output:\n{stdout[-2000:]}\n{stderr[-6000:]}\n{hosts}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def status(lab: RunningLab, *args: str) -> dict[str, Any]:
    """``failover status --json``, parsed."""
    done = failover(lab, "status", "--json", *args)
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def primary(lab: RunningLab) -> str:
    """The site that answers as the only primary."""
    current = status(lab)["primary"]
    assert current in OTHER, f"no single primary: {current}"
    return str(current)


def assert_whole(lab: RunningLab, expected_primary: str) -> None:
    """One primary, the other site streaming from it, every DNS provider answering it."""
    report = status(lab)
    assert report["primary"] == expected_primary, report["warnings"]
    standby = OTHER[expected_primary]
    assert report["sites"][standby]["role"] == "standby"
    assert report["sites"][standby]["upstream"] == expected_primary
    assert set(report["dns"]) == {"bind9", "route53"}
    for name, answer in report["dns"].items():
        assert answer["sites"] == [expected_primary], (name, answer)
    assert report["healthy"], report["warnings"]


def app_db(lab: RunningLab, site: str) -> PgEndpoint:
    """The app's database at one site, as the superuser."""
    return replace(open_deployment(None, lab.lab.paths.root).endpoint(site), dbname="social")


def writer(lab: RunningLab) -> Workload:
    """One user posting 20 times a second, finding the app through the lab's DNS (TTL honoured)."""
    def resolver() -> CachingResolver:
        return CachingResolver(lab.layout.app_name, [(lab.layout.dns_address, lab.layout.dns_port)])

    return Workload(WorkloadSpec(rate=20, users=1, write_share=1.0, media_share=0.0), resolver,
                    port=lab.layout.app_port, host_header=lab.layout.app_name.rstrip("."))


def config_copy(lab: RunningLab, folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The lab's configuration, changed, written elsewhere (same journal, absolute paths)."""
    root = lab.lab.paths.root
    config = resolve_paths(yaml.safe_load((root / CONFIG_FILE_NAME).read_text()), root)
    change(config)
    path = folder / "failover.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_plan_prints_the_steps_with_a_stable_checksum_and_touches_nothing(lab: RunningLab) -> None:
    source = primary(lab)
    last = status(lab)["last_run"]
    first = failover(lab, "plan", "switchover", "--to", OTHER[source], "--json")
    second = failover(lab, "plan", "switchover", "--to", OTHER[source], "--json")
    assert first.returncode == 0, first.stderr
    plan, again = json.loads(first.stdout), json.loads(second.stdout)
    assert plan["checksum"] == again["checksum"]
    actions = [s["action"] for s in plan["steps"]]
    assert actions.index("fence") < actions.index("catch_up") < actions.index("promote")
    assert actions.index("promote") < actions.index("switch_dns") < actions.index("rejoin")
    assert actions[0] == "check_switchover" and actions[-1] == "check_result"
    text = failover(lab, "plan", "switchover", "--to", OTHER[source])
    assert f"plan: switchover {source} -> {OTHER[source]}" in text.stdout
    assert plan["checksum"][:12] in text.stdout
    assert status(lab)["last_run"] == last  # nothing ran
    assert_whole(lab, source)


def test_commands_that_cannot_or_need_not_run_say_so_and_change_nothing(lab: RunningLab) -> None:
    source = primary(lab)
    last = status(lab)["last_run"]
    same = failover(lab, "switchover", "--to", source, "--yes")
    assert same.returncode == 0 and "already the primary" in same.stderr
    unknown = failover(lab, "switchover", "--to", "nowhere", "--yes")
    assert unknown.returncode == 2
    assert "no site 'nowhere'" in unknown.stderr and "aws, hetzner" in unknown.stderr
    unconfirmed = failover(lab, "switchover", "--to", OTHER[source])
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    while_primary_answers = failover(lab, "promote", "--site", OTHER[source], "--yes")
    assert while_primary_answers.returncode == 1
    assert "two" in while_primary_answers.stderr and "switchover" in while_primary_answers.stderr
    assert status(lab)["last_run"] == last
    assert_whole(lab, source)


def test_traffic_is_not_sent_to_a_site_that_fails_its_readiness_check(
    lab: RunningLab, tmp_path: Path
) -> None:
    source = primary(lab)
    target = OTHER[source]
    last = status(lab)["last_run"]

    def app_gone(config: dict[str, Any]) -> None:
        config["sites"][target]["app_url"] = f"http://{lab.layout.address(target)}:{free_port()}"

    done = failover(lab, "switchover", "--to", target, "--yes", "--config",
                    str(config_copy(lab, tmp_path, app_gone)))
    assert done.returncode == 1
    assert f"{target} fails its own readiness check" in done.stderr
    assert status(lab)["last_run"] == last
    assert_whole(lab, source)


def test_a_second_primary_is_reported_and_blocks_every_move_until_rejoined(
    lab: RunningLab,
) -> None:
    source = primary(lab)
    target = OTHER[source]
    deployment = open_deployment(None, lab.lab.paths.root)
    with deployment.endpoint(target).connect() as conn:  # split brain, made by hand
        conn.execute("SELECT pg_promote()")
    report = status(lab)
    assert report["primary"] is None and not report["healthy"]
    assert any("both answer as primary" in w for w in report["warnings"])
    for args in (("switchover", "--to", target), ("switchover", "--to", source),
                 ("promote", "--site", target, "--accept-data-loss")):
        refused = failover(lab, *args, "--yes")
        assert refused.returncode == 1, (args, refused.stderr)
        assert "primar" in refused.stderr
    # The way out: the site that should not be primary rejoins the one that should.
    rejoined = failover(lab, "rejoin", "--site", source, "--yes")
    # Done, with a warning: DNS still answers the site that was demoted.
    assert rejoined.returncode == 3, rejoined.stderr
    assert f"does not answer {target}" in rejoined.stdout
    assert status(lab)["primary"] == target
    assert status(lab)["sites"][source]["upstream"] == target
    back = failover(lab, "switchover", "--to", source, "--yes")  # DNS follows the move
    assert back.returncode == 0, back.stderr
    assert_whole(lab, source)


def test_bad_config_is_rejected_with_every_problem(lab: RunningLab, tmp_path: Path) -> None:
    config = yaml.safe_load((lab.lab.paths.root / CONFIG_FILE_NAME).read_text())
    config["sites"]["aws"]["database"]["port"] = 70000
    del config["sites"]["hetzner"]["app_url"]
    config["dns"]["low_ttl"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    done = failover(lab, "status", "--config", str(bad))
    assert done.returncode == 2
    assert "3 problems" in done.stderr
    for where in ("sites.aws.database.port", "sites.hetzner.app_url", "dns.low_ttl"):
        assert where in done.stderr


def test_a_fenced_primarys_app_answers_503_at_once_instead_of_hanging(lab: RunningLab) -> None:
    source = primary(lab)
    deployment = open_deployment(None, lab.lab.paths.root)
    with lab.client(source) as app:
        user = app.post("/v1/users", json={"handle": "fenced_reader"})
        assert user.status_code == 201
        with deployment.endpoint(source).connect() as conn:
            fenced = fence(conn, "postgres", "test")
            try:
                # Shorter than the app's own 5 s pool timeout: a hang would fail here.
                answer = app.post("/v1/posts", timeout=3.0, json={
                    "author_id": user.json()["id"], "text": "during the fence"})
                assert answer.status_code == 503
                assert "pg_hba.conf rejects" in answer.text
            finally:
                unfence(conn, fenced.original_hba)
        assert status(lab)["primary"] == source


def assert_backed_up_off_provider(lab: RunningLab, site: str) -> None:
    """Every repository ``site`` archives to is at another provider, and holds its new WAL.

    A repository new to this primary gets the stanza and a full backup from its
    agent; each then takes WAL of the primary's timeline (a backup ends with a
    segment switch).
    """
    agent = agents.client(lab.layout, lab.lab.paths, site)
    try:
        timeline = f"{agent.status()['timeline']:08X}"
    finally:
        agent.close()
    seen: dict[str, Any] = {}

    def backed_up() -> bool:
        done = failover(lab, "backup", "status", "--json")
        seen.update(json.loads(done.stdout or "{}"))
        return done.returncode == 0 and seen["site"] == site and all(
            (r["last_wal"] or "").startswith(timeline) for r in seen["repositories"])

    # A full backup first, to each repository new to it: a minute or more on a loaded machine.
    wait_for(backed_up, timeout=150, what=f"{site}'s repositories to take its WAL",
             retry_on=())
    providers = {r["provider"] for r in seen["repositories"]}
    assert providers and site not in providers, seen  # the lab's providers are its sites
    assert all(r["last_full"] for r in seen["repositories"]), seen
    # Its objects are copied to the buckets at the other providers, and status says how far.
    copies: dict[str, Any] = {}

    def copying() -> bool:
        copies.update(status(lab)["sites"][site]["objects"] or {})
        return bool(copies) and all(c["lag_seconds"] is not None for c in copies.values())

    wait_for(copying, timeout=30, what=f"{site}'s objects to be copied", retry_on=())
    assert set(copies) == {"aws", "hetzner", "spare"} - {site}


def test_switchover_there_and_back_loses_no_acknowledged_write(lab: RunningLab) -> None:
    source = primary(lab)
    w = writer(lab)
    w.start()
    try:
        w.wait_acks(20, timeout=30)
        for target in (OTHER[source], source):
            done = failover(lab, "switchover", "--to", target, "--yes", "--json")
            assert done.returncode == 0, done.stderr
            run = json.loads(done.stdout)
            assert run["outcome"] == "ok" and run["to_site"] == target
            assert all(s["outcome"] == "ok" for s in run["steps"])
            w.wait_acks(20, timeout=30)  # writes go on at the new primary
            assert_backed_up_off_provider(lab, target)
    finally:
        log = w.stop()
    acks = log.acked_posts()
    assert len(acks) >= 60
    assert {a.address for a in acks} == {lab.layout.address(s) for s in OTHER}
    ids = [a.id for a in acks if a.id]
    assert missing_posts(app_db(lab, source), ids) == []
    assert_whole(lab, source)


@pytest.mark.parametrize("crash_after", ["fence", "promote", "switch_dns"])
def test_a_run_killed_mid_plan_is_resumed_by_the_same_command(
    lab: RunningLab, crash_after: str
) -> None:
    source = primary(lab)
    target = OTHER[source]
    killed = failover(lab, "switchover", "--to", target, "--yes",
                      env={CRASH_AFTER_STEP: crash_after})
    assert killed.returncode == -9, killed.stderr
    last = status(lab)["last_run"]
    assert last["outcome"] == "interrupted"
    done_steps = [s["action"] for s in last["steps"] if s["outcome"] == "ok"]
    assert done_steps[-1] == crash_after
    # Any other move is refused until this one is finished.
    other = failover(lab, "switchover", "--to", source, "--yes")
    assert other.returncode == 1 and "did not finish" in other.stderr
    resumed = failover(lab, "switchover", "--to", target, "--yes", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    run = json.loads(resumed.stdout)
    assert run["id"] == last["id"] and run["outcome"] == "ok"
    # Each step ran exactly once: those done before the kill were not run again,
    # and the kill came after the journal took its step.
    assert [s["attempts"] for s in run["steps"]] == [1] * len(run["steps"])
    assert_whole(lab, target)


def test_one_dns_provider_down_the_other_is_switched_and_the_result_names_it(
    lab: RunningLab, tmp_path: Path
) -> None:
    source = primary(lab)
    target = OTHER[source]
    def no_route53(config: dict[str, Any]) -> None:
        config["dns_providers"]["route53"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"

    broken = config_copy(lab, tmp_path, no_route53)
    done = failover(lab, "switchover", "--to", target, "--yes", "--json", "--config", str(broken))
    assert done.returncode == 3, done.stderr
    run = json.loads(done.stdout)
    assert run["outcome"] == "ok"
    assert any("route53" in w for w in run["warnings"])
    switch = next(s for s in run["steps"] if s["action"] == "switch_dns")
    assert switch["result"]["providers"]["bind9"] == "ok"
    assert switch["result"]["providers"]["route53"] != "ok"
    report = status(lab)
    assert report["dns"]["bind9"]["sites"] == [target]
    assert report["dns"]["route53"]["sites"] == [source]  # still the old answer
    assert not report["healthy"]
    # With both providers back, moving again sets both right.
    back = failover(lab, "switchover", "--to", source, "--yes")
    assert back.returncode == 0, back.stderr
    assert_whole(lab, source)


def test_emergency_promote_with_the_primary_stopped(lab: RunningLab) -> None:
    source = primary(lab)
    target = OTHER[source]
    agent = agents.client(lab.layout, lab.lab.paths, source)
    try:
        agent.stop_database()  # and its agent leaves it stopped
    finally:
        agent.close()
    refused = failover(lab, "promote", "--site", target, "--yes")
    assert refused.returncode == 1
    assert "--accept-data-loss" in refused.stderr
    assert status(lab)["sites"][target]["role"] == "standby"  # untouched

    done = failover(lab, "promote", "--site", target, "--accept-data-loss", "--yes", "--json")
    assert done.returncode in (0, 3), done.stderr
    run = json.loads(done.stdout)
    assert run["outcome"] == "ok"
    assert any("cannot be fenced" in n for n in run["notes"])
    report = status(lab)
    assert report["primary"] == target
    assert all(a["sites"] == [target] for a in report["dns"].values())

    w = writer(lab)
    w.start()
    try:
        w.wait_acks(5, timeout=30)
    finally:
        log = w.stop()
    assert {a.address for a in log.acked_posts()} == {lab.layout.address(target)}

    rejoined = failover(lab, "rejoin", "--site", source, "--yes")
    assert rejoined.returncode == 0, rejoined.stderr
    assert_whole(lab, target)
