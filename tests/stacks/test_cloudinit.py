"""The cloud-init each site's host boots with: valid for cloud-init, and what it must say.

AWS's and Hetzner's hosts get the user-data their stacks render; the spare's
host gets what `failover rebuild` renders from its stack's outputs (the same
template, its agent config and secret). Cloud-init's own schema check runs when
cloud-init is here (`cloud-init schema`, Debian's package), or when its schema
file is (``$CLOUD_INIT_SCHEMA``, or where Debian's package puts it); the YAML
and content checks always run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
import yaml

from failover.agent.config import AgentConfig
from failover.agent.install import UNIT_NAME, render_user_data
from tests.stacks.mocked import SITES, Deployed, deploy_site, plain
from tests.stacks.policies import HOSTS, pip_requirement, secret_strings

SCHEMA_ENV = "CLOUD_INIT_SCHEMA"
DEBIAN_SCHEMA = Path(
    "/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")
# Where scripts/setup.sh puts the schema taken from Debian's package (not installed).
VENV_SCHEMA = Path(sys.prefix) / "share" / "cloud-init" / "schema-cloud-config-v1.json"


def user_data_of(deployed: Deployed) -> str:
    """The user-data a site's host boots with."""
    hosts = [made for made in deployed.made if made.type in HOSTS]
    if hosts:
        (host,) = hosts
        return str(plain(host.inputs["userData"]))
    # A spare: what the rebuild sends (failover.engine.rebuild._user_data makes this call).
    out = deployed.outputs
    return render_user_data(site=out["site"], requirement=out["app_version"],
                            config_text=out["agent_config"], secret=out["agent_secret"])


@pytest.fixture(scope="module")
def sites() -> dict[str, tuple[Deployed, str]]:
    """Each site's stack under mocks, and its host's user-data."""
    deployed = {stack: deploy_site(stack) for stack in SITES}
    return {stack: (d, user_data_of(d)) for stack, d in deployed.items()}


def _files(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["path"]: entry for entry in data["write_files"]}


@pytest.mark.parametrize("stack", sorted(SITES))
def test_the_user_data_installs_postgres_the_app_and_the_agent(
        sites: dict[str, tuple[Deployed, str]], stack: str) -> None:
    deployed, text = sites[stack]
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert "postgresql-15" in data["packages"]
    assert pip_requirement(text) == deployed.outputs["app_version"] == "failover==0.1.0"
    files = _files(data)
    assert files[f"/etc/systemd/system/{UNIT_NAME}"]["content"].startswith("# The failover")
    assert ["systemctl", "enable", "--now", UNIT_NAME] in data["runcmd"]
    config = AgentConfig.model_validate(yaml.safe_load(files["/etc/failover/agent.yaml"]
                                                       ["content"]))
    assert (config.site, config.provider) == (SITES[stack], deployed.outputs["provider"])
    assert config.app is not None and config.app.argv[1:3] == ["-m", "infra.refapp"]


@pytest.mark.parametrize("stack", sorted(SITES))
def test_no_secret_is_in_the_clear_outside_its_0600_file(
        sites: dict[str, tuple[Deployed, str]], stack: str) -> None:
    deployed, text = sites[stack]
    data = yaml.safe_load(text)
    secret_file = _files(data)["/etc/failover/agent.secret"]
    assert secret_file["permissions"] == "0600"
    assert secret_file["content"] == deployed.outputs["agent_secret"] + "\n"
    data["write_files"].remove(secret_file)
    rest = json.dumps(data)
    assert [s for s in secret_strings(deployed.outputs) if s in rest] == []
    assert text.count(deployed.outputs["agent_secret"]) == 1


def _schema() -> Path | None:
    for candidate in (os.environ.get(SCHEMA_ENV), DEBIAN_SCHEMA, VENV_SCHEMA):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.mark.parametrize("stack", sorted(SITES))
def test_cloud_init_s_own_schema_accepts_the_user_data(
        sites: dict[str, tuple[Deployed, str]], stack: str, tmp_path: Path) -> None:
    text = sites[stack][1]
    command = shutil.which("cloud-init")
    if command is not None:
        path = tmp_path / "user-data"
        path.write_text(text)
        checked = subprocess.run([command, "schema", "--config-file", str(path)],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        return
    schema = _schema()
    if schema is None:
        pytest.skip("cloud-init is not installed (Debian's `cloud-init`), nor its schema file "
                    f"(${SCHEMA_ENV}, or {VENV_SCHEMA} from scripts/setup.sh)")
    # What `cloud-init schema` runs: its JSON schema (draft 4) over the parsed YAML.
    validator = jsonschema.Draft4Validator(json.loads(schema.read_text()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(text))] == []
