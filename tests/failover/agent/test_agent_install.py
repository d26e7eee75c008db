"""The agent's systemd unit and a new server's cloud-init, rendered and read back."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover.agent.install import (
    UNIT_NAME,
    default_executable,
    install_unit,
    render_unit,
    render_user_data,
)
from failover.exceptions import ConfigError

CONFIG = Path("/etc/failover/agent.yaml")
EXECUTABLE = "/opt/failover/bin/failover"
SECRET = "s3cr3t-7f0c9a1e5b2d4c6e8a0b"
REQUIREMENT = "failover==0.2.0"
CONFIG_TEXT = """\
# The agent of site aws (written by cloud-init).
site: aws
listen: 10.0.0.5:7070
secret_file: agent.secret   # next to this file
state_dir: /var/lib/failover
postgres:
  bindir: /usr/lib/postgresql/15/bin
  data_dir: /var/lib/postgresql/15/site
  address: 10.0.0.5
  passfile: /etc/failover/pgpass
  log: /var/log/failover/postgres.log
app:
  argv: [/opt/failover/bin/python, -m, infra.refapp, --port, "8080"]
  env: {FAILOVER_SITE: aws, NOTE: "costs $5 or ${PRICE}: 100%"}
  log: /var/log/failover/app.log
"""


def user_data(**overrides: Any) -> str:
    arguments: dict[str, Any] = {"site": "aws", "requirement": REQUIREMENT,
                                 "config_text": CONFIG_TEXT, "secret": SECRET}
    return render_user_data(**{**arguments, **overrides})


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's settings by section and key (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def files_by_path(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["path"]: entry for entry in data["write_files"]}


def test_the_unit_runs_the_agent_as_root_and_always_restarts_it() -> None:
    settings = unit_settings(render_unit(CONFIG, EXECUTABLE))
    service = {key: values[-1] for key, values in settings["Service"].items()}
    assert service["ExecStart"] == f"{EXECUTABLE} agent run --config {CONFIG}"
    assert (service["Type"], service["Restart"], service["RestartSec"]) == (
        "simple", "always", "2")
    assert (service["User"], service["KillMode"], service["KillSignal"]) == (
        "root", "mixed", "SIGTERM")
    assert 30 <= int(service["TimeoutStopSec"]) <= 300
    assert (service["ProtectSystem"], service["PrivateTmp"]) == ("full", "yes")
    assert "MemoryDenyWriteExecute" not in service  # PostgreSQL's JIT needs it off
    assert settings["Unit"]["After"] == ["network-online.target"]
    assert settings["Unit"]["StartLimitIntervalSec"] == ["0"]
    assert settings["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_command_line_keeps_odd_paths_literal() -> None:
    text = render_unit(Path('/etc/fail over/%h $HOME "q"\\.yaml'), EXECUTABLE)
    (exec_start,) = unit_settings(text)["Service"]["ExecStart"]
    # % and $ doubled (no specifier, no variable), quotes and backslashes escaped.
    assert exec_start == (f'{EXECUTABLE} agent run --config '
                          '"/etc/fail over/%%h $$HOME \\"q\\"\\\\.yaml"')


def test_the_user_data_installs_the_agent_and_starts_it() -> None:
    text = user_data()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert data["packages"] == ["postgresql-15", "python3-venv"]
    files = files_by_path(data)
    assert files["/etc/failover/agent.yaml"]["content"] == CONFIG_TEXT
    assert files["/etc/failover/agent.yaml"]["permissions"] == "0600"
    assert files["/etc/failover/agent.secret"]["content"] == SECRET + "\n"
    assert files["/etc/failover/agent.secret"]["permissions"] == "0600"
    unit = files[f"/etc/systemd/system/{UNIT_NAME}"]
    assert unit["permissions"] == "0644"
    assert unit["content"] == render_unit(CONFIG, EXECUTABLE)  # byte for byte
    no_cluster = files["/etc/postgresql-common/createcluster.d/failover.conf"]
    assert no_cluster["content"] == "create_main_cluster = false\n"
    assert {entry["owner"] for entry in data["write_files"]} == {"root:root"}
    assert data["runcmd"] == [
        "set -e",
        ["python3", "-m", "venv", "/opt/failover"],
        ["/opt/failover/bin/pip", "install", "--quiet", "--", REQUIREMENT],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", UNIT_NAME],
    ]


def test_the_secret_is_only_in_its_own_file() -> None:
    text = user_data()
    assert text.count(SECRET) == 1
    data = yaml.safe_load(text)
    data["write_files"] = [entry for entry in data["write_files"]
                           if entry["path"] != "/etc/failover/agent.secret"]
    assert SECRET not in repr(data)


def test_paths_venv_and_package_are_parameters() -> None:
    data = yaml.safe_load(user_data(
        config_path=Path("/srv/failover/agent.yaml"), secret_path=Path("/srv/failover/key"),
        venv=Path("/srv/venv"), postgres_package="postgresql-16",
        config_text="site: aws\nsecret_file: /srv/failover/key\n",
        requirement="failover @ https://example.test/failover-0.2.0-py3-none-any.whl"))
    files = files_by_path(data)
    assert set(files) >= {"/srv/failover/agent.yaml", "/srv/failover/key"}
    assert files[f"/etc/systemd/system/{UNIT_NAME}"]["content"] == render_unit(
        Path("/srv/failover/agent.yaml"), "/srv/venv/bin/failover")
    assert data["packages"][0] == "postgresql-16"
    assert data["runcmd"][2] == ["/srv/venv/bin/pip", "install", "--quiet", "--",
                                 "failover @ https://example.test/failover-0.2.0-py3-none-any.whl"]


@pytest.mark.parametrize("config_text", [
    "site: aws\nlisten: 10.0.0.5:7070",  # no final line break
    "site: aws\n\n\n",  # several
    "  site: aws\n  listen: x\n",  # the first line indented
    "\n# after a blank line\nsite: aws\n",
    "site: aws\n   \nlisten: x\n",  # a line of blanks only
    "site: aws\nnote: \"a\ttab, ---\\n...\" # |\n",
    "# ünïcødé ✓ 𝄞, 'single' \"double\" \\ back, $HOME ${x} $$ %h\nsite: aws\n",
])
def test_any_config_text_comes_back_byte_for_byte(config_text: str) -> None:
    data = yaml.safe_load(user_data(config_text=config_text))
    assert files_by_path(data)["/etc/failover/agent.yaml"]["content"] == config_text


@pytest.mark.parametrize(("overrides", "message"), [
    ({"config_path": Path("/etc/failover/agent\n.yaml")},
     "the agent config path must be one line"),
    ({"secret_path": Path("/etc/failover/a\rb")}, "the agent secret path must be one line"),
    ({"venv": Path("/opt/fail\nover")}, "the venv directory must be one line"),
    ({"venv": Path("opt/failover")}, "the venv directory must be an absolute path"),
    ({"site": "aws\nruncmd: [reboot]"}, "site name 'aws\\nruncmd: [reboot]' is not valid"),
    ({"requirement": "-i https://evil.test failover"}, "not an option of pip"),
    ({"requirement": "failover\n- [reboot]"}, "the pip requirement must be one line"),
    ({"postgres_package": "postgresql-15 sudo"}, "PostgreSQL package"),
    ({"config_text": "site: [aws\n"}, "the agent config is not valid YAML"),
    ({"config_text": "- aws\n"}, "the agent config must be a YAML mapping"),
    ({"config_text": "site: gcp\n"}, "the agent config is for site 'gcp', not 'aws'"),
    ({"config_text": "site: aws\nsecret_file: /root/other\n"},
     "reads its secret from '/root/other', but the user-data writes it to"),
    ({"config_text": "site: aws\r\nlisten: x\r\n"}, "carriage returns"),
])
def test_bad_input_is_one_clear_line(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        user_data(**overrides)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("secret", [SECRET + "\nruncmd: [reboot]", "short", SECRET + " x"])
def test_a_bad_secret_is_refused_without_being_shown(secret: str) -> None:
    with pytest.raises(ConfigError, match="it is not shown here") as raised:
        user_data(secret=secret)
    assert secret not in str(raised.value)


def test_a_relative_executable_is_refused() -> None:
    with pytest.raises(ConfigError, match="the failover executable must be an absolute path"):
        render_unit(CONFIG, "failover")


def test_install_writes_the_unit_once_and_replaces_another_only_with_force(
    tmp_path: Path,
) -> None:
    dest = install_unit(tmp_path, CONFIG, EXECUTABLE)
    assert dest == tmp_path / UNIT_NAME
    assert dest.read_text() == render_unit(CONFIG, EXECUTABLE)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert install_unit(tmp_path, CONFIG, EXECUTABLE) == dest  # the same text: fine

    with pytest.raises(ConfigError, match=r"exists and differs .* use --force"):
        install_unit(tmp_path, Path("/srv/agent.yaml"), EXECUTABLE)
    assert dest.read_text() == render_unit(CONFIG, EXECUTABLE)

    install_unit(tmp_path, Path("/srv/agent.yaml"), EXECUTABLE, force=True)
    assert dest.read_text() == render_unit(Path("/srv/agent.yaml"), EXECUTABLE)
    assert sorted(os.listdir(tmp_path)) == [UNIT_NAME]  # nothing left aside


def test_install_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        install_unit(tmp_path / "missing", CONFIG, EXECUTABLE)


def test_the_default_executable_is_this_installation_s_failover() -> None:
    executable = Path(default_executable())
    assert executable.is_absolute() and executable.name == "failover"
    assert os.access(executable, os.X_OK)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
@pytest.mark.parametrize("config", [CONFIG, Path('/etc/fail over/%h $HOME "q".yaml')])
def test_systemd_accepts_the_unit(tmp_path: Path, config: Path) -> None:
    # verify checks that the command exists and can be run: give it one.
    executable = tmp_path / "bin" / "failover"
    executable.parent.mkdir()
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    unit = install_unit(units, config, str(executable))
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)],
                             capture_output=True, text=True, timeout=60, check=False)
    # Only what it says about our unit: a host's other units may draw warnings too.
    ours = [line for line in checked.stderr.splitlines() if UNIT_NAME in line]
    assert checked.returncode == 0 and not ours, checked.stderr
