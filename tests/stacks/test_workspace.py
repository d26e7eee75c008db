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

from failover.exceptions import ConfigError
from failover.stacks.workspace import (
    INSTALL_CLI,
    PASSPHRASE_FILE_ENV,
    PulumiMissing,
    StackFailed,
    backend_of,
    change_summary,
    error_line,
    new_stack_notice,
    opened_stack,
    plain_outputs,
    pulumi_errors,
    require_cli,
    workspace_env,
)
from tests.stacks.projects import pulumi_project

BACKEND = backend_of(Path("/srv/lab"), {})  # the state dir's own: file:///srv/lab/pulumi
THEIR_BACKEND = backend_of(Path("/srv/lab"), {"PULUMI_BACKEND_URL": "s3://their-state"})


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
    project = pulumi_project(tmp_path / "stacks")
    with pytest.raises(PulumiMissing) as refused, opened_stack(
            "aws-primary", tmp_path / "lab", project, which=lambda name: f"/opt/{name}"):
        pytest.fail("the stack opened without a Pulumi CLI")
    assert str(refused.value) == INSTALL_CLI
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_missing_file_other_than_pulumi_is_not_called_a_missing_cli() -> None:
    with pytest.raises(FileNotFoundError), pulumi_errors("spare", BACKEND):
        raise FileNotFoundError(2, "No such file or directory", "/srv/stacks/Pulumi.yaml")


# -- Pulumi's errors in one line -------------------------------------------------------


def test_a_stack_never_deployed_says_where_it_looked_and_how_to_look_elsewhere() -> None:
    with pytest.raises(StackFailed) as refused, pulumi_errors("spare", BACKEND):
        raise failed(stderr="error: no stack named 'spare' found")
    assert str(refused.value) == (
        "stack spare has no state in file:///srv/lab/pulumi (state dir /srv/lab) yet: run "
        "`failover stack up --site spare` first, or, if it was deployed from another state "
        "dir, give that one with --state-dir or FAILOVER_STATE_DIR (the default, "
        ".failover/lab, is under the current folder)")
    with pytest.raises(StackFailed) as refused, pulumi_errors("spare", THEIR_BACKEND):
        raise failed(stderr="error: no stack named 'spare' found")
    assert str(refused.value).endswith(
        "no state in s3://their-state ($PULUMI_BACKEND_URL) yet: run `failover stack up "
        "--site spare` first, or, if it was deployed to another backend, name that one in "
        "$PULUMI_BACKEND_URL")


# -- A stack with nothing deployed -----------------------------------------------------


def test_a_stack_with_nothing_deployed_is_said_to_be_new_naming_the_backend() -> None:
    assert new_stack_notice("aws-primary", BACKEND, deployed=0) == (
        "stack aws-primary has nothing deployed in file:///srv/lab/pulumi (state dir "
        "/srv/lab): `up` would create every resource of it anew; if it was deployed from "
        "another state dir, give that one with --state-dir or FAILOVER_STATE_DIR (the "
        "default, .failover/lab, is under the current folder)")
    assert new_stack_notice("aws-primary", THEIR_BACKEND, deployed=0) == (
        "stack aws-primary has nothing deployed in s3://their-state ($PULUMI_BACKEND_URL): "
        "`up` would create every resource of it anew; if it was deployed to another "
        "backend, name that one in $PULUMI_BACKEND_URL")


def test_a_deployed_stack_needs_no_notice() -> None:
    assert new_stack_notice("aws-primary", BACKEND, deployed=23) is None


def test_the_default_backend_follows_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAILOVER_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert backend_of(None, {}).url == f"file://{tmp_path}/.failover/lab/pulumi"
    monkeypatch.setenv("FAILOVER_STATE_DIR", "/srv/lab")
    assert backend_of(None, {}) == BACKEND


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


# What `pulumi up` prints when the program raised, as Pulumi's Python host reports it.
UNHANDLED = """\
Updating (aws-primary):

 +  pulumi:pulumi:Stack failover-aws-primary creating (0s) error: Program failed with an \
unhandled exception:
 +  pulumi:pulumi:Stack failover-aws-primary **creating failed** 1 error
Diagnostics:
  pulumi:pulumi:Stack (failover-aws-primary):
    error: Program failed with an unhandled exception:
    Traceback (most recent call last):
      File "/srv/failover/stacks/__main__.py", line 6, in <module>
        export(site_stack(load_settings()))
                          ^^^^^^^^^^^^^^^
      File "/srv/failover/infra/components/settings.py", line 170, in load_settings
        raise ConfigError(f"stack {stack}: " + "; ".join(problems))
    failover.exceptions.ConfigError: stack aws-primary: role: 'leader' must be one of \
primary, standby, spare; bucket: 'Not_A_Bucket' is not a valid bucket name

Resources:
    + 1 created

Duration: 1s
"""


def test_a_program_that_raised_is_told_by_its_exception_not_by_pulumis_preamble() -> None:
    with pytest.raises(StackFailed) as refused, pulumi_errors("aws-primary", BACKEND):
        raise failed(stdout=UNHANDLED, stderr="error: update failed\n")
    assert str(refused.value) == (
        "pulumi failed on stack aws-primary: failover.exceptions.ConfigError: stack "
        "aws-primary: role: 'leader' must be one of primary, standby, spare; bucket: "
        "'Not_A_Bucket' is not a valid bucket name")


def test_of_chained_tracebacks_the_last_exception_is_told() -> None:
    stdout = ("    error: Program failed with an unhandled exception:\n"
              "    Traceback (most recent call last):\n      File \"a.py\", line 1\n"
              "    KeyError: 'region'\n\n"
              "    During handling of the above exception, another exception occurred:\n\n"
              "    Traceback (most recent call last):\n      File \"b.py\", line 2\n"
              "    ValueError: no region\n")
    assert error_line(failed(stdout=stdout)) == "ValueError: no region"


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
