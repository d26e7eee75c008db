"""How the fake Hetzner Cloud API reads a new server's cloud-config (no server is started)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from failover.agent.install import render_unit
from failover.processes import ProcessRecord
from infra.lab.hcloud_boot import (
    BadUserData,
    Booted,
    interpret,
    processes,
    write_files,
)
from tests.infra.lab.booting import agent_user_data

ADDRESS = "127.94.30.1"  # never listened on here


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "lab"
    path.mkdir()
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_agents_cloud_config_writes_its_files_under_the_root_and_names_its_agent(
    root: Path,
) -> None:
    data = agent_user_data(root, ADDRESS, 7070, 5432)
    plan = interpret(data.user_data, root)
    assert (plan.site, plan.config_path, plan.state_dir) == ("spare", data.config_path,
                                                            data.state_dir)
    # The unit and PostgreSQL's packaging defaults are the host's: not written here.
    assert {f.path for f in plan.files} == {data.config_path, data.secret_path}
    assert not data.config_path.exists()  # interpreting writes nothing

    write_files(plan)
    assert data.secret_path.read_text() == data.secret + "\n"
    assert yaml.safe_load(data.config_path.read_text())["site"] == "spare"
    assert (_mode(data.secret_path), _mode(data.config_path)) == (0o600, 0o600)
    assert _mode(data.config_path.parent) == 0o755  # as cloud-init makes folders


def test_permissions_are_read_as_cloud_init_reads_them(root: Path) -> None:
    data = agent_user_data(root, ADDRESS, 7070, 5432)
    extra = f'  - path: "{root}/notes/readme"\n    permissions: 0640\n    content: hello\n'
    user_data = data.user_data.replace("write_files:\n", "write_files:\n" + extra)
    plan = interpret(user_data, root)
    write_files(plan)
    assert _mode(root / "notes" / "readme") == 0o640  # YAML's own octal, unquoted
    assert (root / "notes" / "readme").read_text() == "hello"


def test_the_agents_config_is_found_through_the_units_quoting(root: Path) -> None:
    odd = root / "a dir" / "100%" / "agent.yaml"
    unit = render_unit(odd, "/opt/failover/bin/failover")
    assert '"' in unit and "%%" in unit  # quoted and escaped for systemd
    data = agent_user_data(root, ADDRESS, 7070, 5432, config_path=odd)
    assert interpret(data.user_data, root).config_path == odd


@pytest.mark.parametrize("change, refused", [
    (lambda text: text.replace("#cloud-config\n", ""), "cloud-config document"),
    (lambda text: text + "\n  - [unbalanced\n", "not valid YAML"),
    (lambda text: text + "\nusers: [root]\n", "does not interpret users"),
    (lambda text: text.replace("    owner: root:root\n", "    owner: root:root\n    append: true\n",
                               1), "does not interpret append"),
    (lambda text: text.replace("failover-agent.service", "other.service"), "boots failover agents"),
    (lambda text: text.replace("--config /", "--config /elsewhere/"), "does not write under"),
    (lambda text: text.replace("site: spare", "site: Spare"), "the agent config"),
])
def test_what_it_cannot_boot_is_refused_before_anything_is_written(
    root: Path, change: Callable[[str], str], refused: str,
) -> None:
    data = agent_user_data(root, ADDRESS, 7070, 5432)
    with pytest.raises(BadUserData, match=refused):
        interpret(change(data.user_data), root)
    assert not data.config_path.exists()


def test_a_yaml_error_says_where_without_quoting_the_line(root: Path) -> None:
    data = agent_user_data(root, ADDRESS, 7070, 5432)
    broken = data.user_data.replace(f"      {data.secret}", f"    {data.secret}: x: y")
    with pytest.raises(yaml.YAMLError) as plain:
        yaml.safe_load(broken)
    assert data.secret[-8:] in str(plain.value)  # PyYAML's own message quotes the line
    with pytest.raises(BadUserData, match=r"not valid YAML: .* at line \d+, column \d+") as info:
        interpret(broken, root)
    assert data.secret[-8:] not in str(info.value)


def test_the_agents_files_may_not_leave_the_root(root: Path, tmp_path: Path) -> None:
    data = agent_user_data(root, ADDRESS, 7070, 5432)
    outside = tmp_path / "outside"
    for escape in (outside, root / ".." / "outside", root / "link"):
        (root / "link").unlink(missing_ok=True)
        (root / "link").symlink_to(outside)  # a folder under the root that leads out of it
        user_data = data.user_data.replace(str(data.secret_path), str(escape / "agent.secret"))
        with pytest.raises(BadUserData, match="outside the fake's root"):
            interpret(user_data, root)
    # Nor may anything but the host's own setup be written outside it.
    with pytest.raises(BadUserData, match=r"/etc/cron\.d/x is outside"):
        interpret(data.user_data.replace("/etc/postgresql-common/createcluster.d/failover.conf",
                                         "/etc/cron.d/x"), root)


def test_the_lab_finds_a_booted_agent_and_its_children_by_their_records(root: Path) -> None:
    state_dir = root / "agents" / "spare"
    state_dir.mkdir(parents=True)
    agent = ProcessRecord("agent@spare", 4242, 1, ("python",), "log")
    child = ProcessRecord("postgres@spare", 4343, 2, ("postgres",), "log")
    (state_dir / "children.json").write_text(
        json.dumps({"agent_pid": 4242, "children": [child.to_dict()]}))
    (root / "servers").mkdir()
    (root / "servers" / "spare-app.json").write_text(json.dumps(
        Booted({"id": 1, "name": "spare-app"}, None, agent, state_dir).to_dict()))
    assert processes(root, "hcloud@spare") == [agent.child_of("hcloud@spare"),
                                               child.child_of("agent@spare")]
    assert processes(root / "nothing", "hcloud@spare") == []
