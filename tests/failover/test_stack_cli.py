"""``failover stack``: what a user sees where Pulumi's CLI is not installed, or the site is wrong.

The missing CLI is run as a user runs it: ``python -m failover`` in a
process of its own, with a PATH that has no ``pulumi``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from failover.cli import cli
from failover.stacks.project import known_stacks
from failover.stacks.workspace import PROJECT_DIR
from tests.stacks.projects import SITES, pulumi_project


def without_pulumi(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m failover ARGS`` with nothing on PATH, so no ``pulumi`` either."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PULUMI_", "FAILOVER_"))}
    env["PATH"] = str(tmp_path / "empty")
    return subprocess.run([sys.executable, "-m", "failover", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)


def assert_no_cli_said(code: int, stdout: str, stderr: str) -> None:
    """Exit 2, nothing on stdout, and one line on stderr that says how to install Pulumi."""
    assert (code, stdout) == (2, ""), stderr
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith("failover: error: the Pulumi CLI is not installed")
    assert "curl -fsSL https://get.pulumi.com | sh" in stderr
    assert "Traceback" not in stderr


def test_without_the_pulumi_cli_a_preview_says_so_in_one_line(tmp_path: Path) -> None:
    project = pulumi_project(tmp_path / "stacks")
    done = without_pulumi(tmp_path, "stack", "preview", "--site", "aws-primary",
                          "--project-dir", str(project), "--state-dir", str(tmp_path / "lab"))
    assert_no_cli_said(done.returncode, done.stdout, done.stderr)
    assert not (tmp_path / "lab").exists()  # refused before anything was made


@pytest.mark.parametrize("command", [("up", "--yes"), ("destroy", "--yes"), ("outputs", "--json")])
def test_without_the_pulumi_cli_every_other_command_says_so_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    project = pulumi_project(tmp_path / "stacks")
    result = CliRunner().invoke(cli, ["stack", *command, "--site", "spare", "--project-dir",
                                      str(project), "--state-dir", str(tmp_path / "lab")])
    assert_no_cli_said(result.exit_code, result.stdout, result.stderr)


def test_the_repositorys_own_stacks_meet_the_missing_cli_too(tmp_path: Path) -> None:
    assert set(SITES) <= set(known_stacks(PROJECT_DIR))
    done = without_pulumi(tmp_path, "stack", "preview", "--site", "aws-primary",
                          "--state-dir", str(tmp_path / "lab"))
    assert_no_cli_said(done.returncode, done.stdout, done.stderr)


def test_an_unknown_site_names_the_sites_and_their_stacks(tmp_path: Path) -> None:
    project = pulumi_project(tmp_path / "stacks")
    result = CliRunner().invoke(cli, ["stack", "outputs", "--site", "gcp", "--project-dir",
                                      str(project), "--state-dir", str(tmp_path / "lab")])
    assert result.exit_code == 2
    assert result.stderr == (f"failover: error: --site gcp: no site or stack of that name in "
                             f"{project} (site -> stack: aws -> aws-primary, hetzner -> "
                             "hetzner-standby, spare -> spare)\n")


@pytest.mark.parametrize("site", ["aws", "aws-primary"])
def test_site_takes_the_site_s_name_as_every_other_site_option_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: str) -> None:
    # Taken: the command goes on to look for the Pulumi CLI, which is missing here.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    project = pulumi_project(tmp_path / "stacks")
    result = CliRunner().invoke(cli, ["stack", "preview", "--site", site, "--project-dir",
                                      str(project), "--state-dir", str(tmp_path / "lab")])
    assert_no_cli_said(result.exit_code, result.stdout, result.stderr)


def test_the_help_says_what_the_commands_need() -> None:
    result = CliRunner().invoke(cli, ["stack", "up", "--help"])
    assert result.exit_code == 0
    said = " ".join(result.output.split())
    assert "Pulumi CLI on PATH" in said and "HCLOUD_TOKEN" in said and "AWS_" in said
    assert "PULUMI_BACKEND_URL" in said
    assert "--state-dir or FAILOVER_STATE_DIR" in said  # the default is under the folder
    assert "The site (its failover:site, e.g. aws) or its stack's name" in said
