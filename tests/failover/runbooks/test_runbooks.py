"""The runbooks: one per move kind, rendered from the plans, the same bytes every time, and the
committed ones what the code renders (no server: the lab's configuration is built offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import failover.engine.rebuild  # noqa: F401  (its actions register with ACTIONS)
from failover.cli.base import cli
from failover.engine.plans import plan_switchover
from failover.engine.steps import ACTIONS
from failover.runbooks.files import (
    INDEX,
    RUNBOOKS,
    default_lab,
    deployment_at,
    differences,
    lab_at,
    render_all,
)
from failover.runbooks.moves import MOVES, PaperDeployment, moves
from failover.runbooks.render import manual_blocks
from failover.runbooks.texts import TEXTS
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets
from tests.failover.handbuilt import STREAMING, HandBuiltDeployment, JournalingExecutor, lab_files

KINDS = {"planned-switchover", "termination-notice", "emergency-promote", "rejoin",
         "rebuild-from-backups", "lost-dns-provider", "revoked-credentials", "tool-down"}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["runbook", "render", *args])
    return result.exit_code, result.stderr


def test_every_action_of_the_engine_has_its_words_and_commands() -> None:
    assert set(ACTIONS) <= set(TEXTS), sorted(set(ACTIONS) - set(TEXTS))


def test_there_is_one_runbook_per_move_kind_and_an_index() -> None:
    files = render_all(default_lab())
    assert set(files) == {f"{kind}.md" for kind in KINDS} | {INDEX}
    assert len(MOVES) == len(KINDS)
    for kind in KINDS:
        assert f"]({kind}.md)" in files[INDEX]


def test_the_committed_runbooks_are_what_the_code_renders() -> None:
    wrong = differences(render_all(default_lab()), RUNBOOKS)
    assert wrong == [], "render them anew: failover runbook render\n" + "\n".join(wrong)


def test_rendering_is_the_same_wherever_and_whenever_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = render_all(default_lab())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAILOVER_STATE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    assert render_all(default_lab()) == first
    text = "".join(first.values())
    assert str(RUNBOOKS.parent) not in text and os.uname().nodename not in text


def test_each_step_of_the_plan_is_a_step_of_its_runbook_in_order() -> None:
    source = default_lab()
    paper = PaperDeployment(source.config, source.path, STREAMING)
    plan = plan_switchover(paper, "hetzner", STREAMING)
    text = render_all(source)["planned-switchover.md"]
    places = [text.index(f". {step.title}\n") for step in plan.steps]
    assert places == sorted(places) and len(plan.steps) == 14
    assert "failover switchover --to hetzner --yes" in text


def test_the_manual_switchover_fences_catches_up_promotes_switches_dns_then_rejoins() -> None:
    blocks = manual_blocks(render_all(default_lab())["planned-switchover.md"])
    joined = "\n".join(blocks)

    def first(needle: str) -> int:
        return next(i for i, b in enumerate(blocks) if needle in b)

    order = [first("synchronous_commit = 'remote_apply'"), first("DO $fence$"),
             first("failover-catch-up"), first("pg_promote(true"),
             first("update add app.lab.failover.test. 1 A 127.0.20.1"),
             first('"Value": "127.0.20.1"'), first("pg_rewind")]
    assert order == sorted(order)
    assert "nsupdate -t 3 -k .failover/lab/secrets/tsig.key" in joined
    assert "--endpoint-url http://127.0.10.1:5001 route53 change-resource-record-sets" in joined
    assert "s3 sync s3://media" in joined
    assert "When pg_rewind cannot" not in joined  # what to do on failure is no manual step


def test_no_secret_of_the_lab_is_printed(tmp_path: Path) -> None:
    root = lab_files(tmp_path / "lab")
    secrets = LabSecrets.load(LabPaths(root))
    text = "".join(render_all(lab_at(root)).values())
    for secret in (secrets.postgres_password, secrets.replication_password,
                   secrets.aws_secret_access_key, secrets.tsig.secret, secrets.hcloud_token,
                   "hand-built-agent-secret", "not-a-real-key"):
        assert secret not in text
    assert f"-k {root}/secrets/tsig.key" in text  # the key file is named instead


def test_a_real_deployment_gets_its_hosts_and_the_journals_durations(tmp_path: Path) -> None:
    deployment = HandBuiltDeployment(tmp_path / "lab")  # no agents: its plan has no rejoin
    ran = plan_switchover(deployment, "hetzner", STREAMING)
    JournalingExecutor()(deployment, ran, progress=lambda _: None)
    source = deployment_at(tmp_path / "lab" / "failover.yaml")
    files = render_all(source)
    switchover = files["planned-switchover.md"]
    assert "systemctl stop failover-agent" in switchover and "kill -STOP" not in switchover
    assert "Rendered without a journal" not in switchover
    rendered = plan_switchover(PaperDeployment(source.config, source.path, STREAMING),
                               "hetzner", STREAMING)
    times = [a.action for a in ran.steps]
    for n in (0, 1, 2):
        said = ("No recent run of it in this journal" if n == 0 else
                f"(median of {n} in the last 50 runs")
        assert switchover.count(said) == sum(times.count(s.action) == n for s in rendered.steps)
    assert "No recent run of it" in files["emergency-promote.md"]  # check_emergency never ran


def test_check_passes_on_what_render_wrote_and_names_a_changed_and_a_missing_file(
        tmp_path: Path) -> None:
    root, out = lab_files(tmp_path / "lab"), tmp_path / "books"
    code, said = run("--state-dir", str(root), "--out", str(out))
    assert code == 0 and f"{len(KINDS) + 1} written anew, 0 unchanged" in said
    code, said = run("--state-dir", str(root), "--out", str(out), "--check")
    assert code == 0 and "match" in said
    (out / "rejoin.md").write_text((out / "rejoin.md").read_text() + "edited by hand\n")
    (out / "tool-down.md").unlink()
    code, said = run("--state-dir", str(root), "--out", str(out), "--check")
    assert code == 1
    assert f"{out}/rejoin.md: differs" in said and f"{out}/tool-down.md: missing" in said
    assert "planned-switchover.md" not in said
    assert "render them anew: failover runbook render" in said
    assert (out / "rejoin.md").read_text().endswith("edited by hand\n")  # --check writes nothing


def test_bad_options_are_refused_in_one_line(tmp_path: Path) -> None:
    code, said = run("--state-dir", str(tmp_path), "--config", str(tmp_path / "f.yaml"))
    assert code == 2 and "give --config or --state-dir, not both" in said
    code, said = run("--state-dir", str(tmp_path / "none"))
    assert code == 2 and "no lab in" in said and said.count("\n") == 1


def test_a_deployment_without_agents_says_which_moves_it_cannot_plan(tmp_path: Path) -> None:
    source = lab_at(lab_files(tmp_path / "lab"))
    sites = {name: site.model_copy(update={"compute": None})
             for name, site in source.config.sites.items()}
    paper = PaperDeployment(source.config.model_copy(update={"sites": sites}), source.path)
    by_name = {m.name: m for m in moves(paper)}
    assert set(by_name) == KINDS
    assert by_name["rejoin"].steps == () and "no compute adapter" in by_name["rejoin"].when
    assert any("stays fenced" in note for note in by_name["planned-switchover"].notes)
