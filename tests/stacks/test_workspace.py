"""Opening a site's stack: backend, passphrase, Pulumi's errors in one line, outputs masked.

Pulumi's CLI cannot be installed here, so nothing in this module runs it. The
missing CLI is met by the real Automation API (``LocalWorkspace`` runs
``pulumi version`` and fails); Pulumi's other errors are built the way the
API builds them (``create_command_error`` over the command's output) from
the text Pulumi prints.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pulumi.automation import CommandResult, OpType, OutputValue
from pulumi.automation.errors import create_command_error

from failover.exceptions import ConfigError, UsageError
from failover.stacks.workspace import (
    INSTALL_CLI,
    PASSPHRASE_FILE_ENV,
    PulumiMissing,
    StackFailed,
    change_summary,
    check_stack,
    error_line,
    known_stacks,
    opened_stack,
    plain_outputs,
    pulumi_errors,
    require_cli,
    workspace_env,
)

BACKEND = "file:///srv/pulumi-state"


def pulumi_project(root: Path, *stacks: str) -> Path:
    """A Pulumi project folder with one stack config file per name."""
    root.mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: failover\nruntime: python\n")
    for name in stacks:
        (root / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    return root


def mode(path: Path) -> int:
    """A file's permission bits."""
    return stat.S_IMODE(path.stat().st_mode)


def failed(stdout: str = "", stderr: str = "", code: int = 255) -> Exception:
    """The error the Automation API raises for a pulumi command that printed this."""
    return create_command_error(CommandResult(stdout=stdout, stderr=stderr, code=code))


# -- Backend and passphrase ------------------------------------------------------------


def test_the_default_backend_is_a_private_folder_of_the_state_dir(tmp_path: Path) -> None:
    env = workspace_env(tmp_path / "lab", {})
    root = tmp_path / "lab" / "pulumi"
    assert env["PULUMI_BACKEND_URL"] == f"file://{root}"
    assert mode(root) == 0o700


def test_the_state_dirs_passphrase_is_made_once_0600_and_passed_as_a_file(
        tmp_path: Path) -> None:
    env = workspace_env(tmp_path, {})
    passphrase = tmp_path / "pulumi" / "passphrase"
    assert env[PASSPHRASE_FILE_ENV] == str(passphrase)
    assert mode(passphrase) == 0o600
    made = passphrase.read_text()
    assert len(made.strip()) >= 32
    assert made.strip() not in "".join(env.values())  # the path goes to Pulumi, never the words
    assert workspace_env(tmp_path, {}) == env
    assert passphrase.read_text() == made  # a second run must decrypt what the first wrote


@pytest.mark.parametrize("given", [
    {"PULUMI_CONFIG_PASSPHRASE": "theirs"},
    {"PULUMI_CONFIG_PASSPHRASE_FILE": "/etc/their-passphrase"},
])
def test_a_passphrase_given_in_the_environment_is_used_instead(
        tmp_path: Path, given: dict[str, str]) -> None:
    env = workspace_env(tmp_path, given)
    assert PASSPHRASE_FILE_ENV not in env  # Pulumi reads theirs from the environment
    assert not (tmp_path / "pulumi" / "passphrase").exists()
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path}/pulumi"


def test_a_backend_in_the_environment_is_left_to_pulumi_with_nothing_made(
        tmp_path: Path) -> None:
    env = workspace_env(tmp_path, {"PULUMI_BACKEND_URL": BACKEND})
    assert "PULUMI_BACKEND_URL" not in env and PASSPHRASE_FILE_ENV not in env
    assert not (tmp_path / "pulumi").exists()


def test_a_passphrase_file_others_can_read_is_refused(tmp_path: Path) -> None:
    workspace_env(tmp_path, {})
    (tmp_path / "pulumi" / "passphrase").chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others .*chmod 600"):
        workspace_env(tmp_path, {})


# -- Which stacks ----------------------------------------------------------------------


def test_the_stacks_are_the_projects_stack_files(tmp_path: Path) -> None:
    project = pulumi_project(tmp_path / "stacks", "spare", "aws-primary", "hetzner-standby")
    assert known_stacks(project) == ["aws-primary", "hetzner-standby", "spare"]
    check_stack("spare", project)
    with pytest.raises(UsageError, match=r"no stack 'aws' .*stacks: aws-primary, "
                       r"hetzner-standby, spare$"):
        check_stack("aws", project)


def test_a_folder_without_pulumi_yaml_is_no_project(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no Pulumi project in .*--project-dir"):
        check_stack("aws-primary", tmp_path)


# -- No Pulumi CLI ---------------------------------------------------------------------


def test_no_pulumi_on_path_is_refused_before_pulumi_is_asked() -> None:
    with pytest.raises(PulumiMissing) as refused:
        require_cli(which=lambda name: None)
    assert str(refused.value) == INSTALL_CLI and refused.value.exit_code == 2


def test_the_automation_apis_missing_cli_error_is_translated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The look-up up front is told there is a pulumi: the real LocalWorkspace then
    # runs `pulumi version` on an empty PATH and raises FileNotFoundError itself.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    project = pulumi_project(tmp_path / "stacks", "aws-primary")
    with pytest.raises(PulumiMissing) as refused, opened_stack(
            "aws-primary", tmp_path / "lab", project, which=lambda name: f"/opt/{name}"):
        pytest.fail("the stack opened without a Pulumi CLI")
    assert str(refused.value) == INSTALL_CLI
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_missing_file_other_than_pulumi_is_not_called_a_missing_cli() -> None:
    with pytest.raises(FileNotFoundError), pulumi_errors("spare", BACKEND):
        raise FileNotFoundError(2, "No such file or directory", "/srv/stacks/Pulumi.yaml")


# -- Pulumi's errors in one line -------------------------------------------------------


def test_a_stack_never_deployed_says_to_run_up_first() -> None:
    with pytest.raises(StackFailed) as refused, pulumi_errors("spare", BACKEND):
        raise failed(stderr="error: no stack named 'spare' found")
    assert str(refused.value) == (f"stack spare has no state in {BACKEND} yet: run "
                                  "`failover stack up --site spare` first")


def test_a_locked_stack_says_another_update_holds_it() -> None:
    locked = ("error: the stack is currently locked by 1 lock(s). Either wait for the other "
              "process(es) to end or delete the lock file with `pulumi cancel`.")
    with pytest.raises(StackFailed, match=r"being changed by another update .*pulumi cancel"), \
            pulumi_errors("aws-primary", BACKEND):
        raise failed(stderr=locked)


def test_a_failed_update_says_the_programs_error_before_the_clis_summary() -> None:
    stdout = ("Updating (aws-primary):\n     Type   Name\n\nDiagnostics:\n"
              "  aws:ec2:Instance (app):\n"
              "    error: creating EC2 Instance: operation error EC2: RunInstances,\n"
              "      api error UnauthorizedOperation\n")
    with pytest.raises(StackFailed) as refused, pulumi_errors("aws-primary", BACKEND):
        raise failed(stdout=stdout, stderr="error: update failed")
    assert str(refused.value) == ("pulumi failed on stack aws-primary: error: creating EC2 "
                                  "Instance: operation error EC2: RunInstances,")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("stdout", "stderr", "line"), [
    ("", "error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or\n",
     "error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or"),
    ("", "warning: A new version\nsomething broke\n", "warning: A new version"),
    ("", "", "pulumi failed and said nothing"),
])
def test_the_error_line_is_pulumis_first_error_else_its_first_words(
        stdout: str, stderr: str, line: str) -> None:
    assert error_line(failed(stdout=stdout, stderr=stderr)) == line


# -- Outputs and summaries -------------------------------------------------------------


def test_secret_outputs_are_masked_unless_shown() -> None:
    outputs = {
        "public_ip": OutputValue("203.0.113.7", secret=False),
        "db_password": OutputValue("hunter2-but-longer", secret=True),
        "ports": OutputValue([80, 443], secret=False),
    }
    assert plain_outputs(outputs, show_secrets=False) == {
        "db_password": "[secret]", "ports": [80, 443], "public_ip": "203.0.113.7"}
    assert plain_outputs(outputs, show_secrets=True)["db_password"] == "hunter2-but-longer"


def test_the_change_summary_counts_each_operation_in_words() -> None:
    assert change_summary({OpType.CREATE: 3, OpType.SAME: 1, OpType.DELETE: 0}) == \
        "create 3, same 1"
    assert change_summary({"delete": 5}) == "delete 5"
    assert change_summary(None) == "no resources"
