"""``failover config from-stacks``: the stacks' mocked outputs become a failover.yaml that
loads, names its secrets by file, and that ``failover status`` accepts."""

from __future__ import annotations

import copy
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from failover.agent.protocol import agent_secret
from failover.aws import load_credentials
from failover.cli import cli
from failover.config import load_config
from failover.dns.tsig import TsigKey
from failover.secretfiles import write_private
from failover.stacks.outputs import parse_outputs
from tests.stacks.mocked import ADDRESSES, all_sites
from tests.stacks.policies import secret_strings

Outputs = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def outputs() -> Outputs:
    """What `failover stack outputs --json --show-secrets` gives for each mocked stack."""
    return {deployed.stack: deployed.outputs for deployed in all_sites()}


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "hcloud.token"
    write_private(path, "mock-hcloud-token\n")
    return path


def from_stacks(tmp_path: Path, outputs: Outputs, *args: str) -> Result:
    """Run the command on ``outputs`` (written to a file) as a user would, in-process."""
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return CliRunner().invoke(cli, ["config", "from-stacks", "--outputs-file", str(path), *args])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_stack_s_outputs_follow_the_contract(outputs: Outputs) -> None:
    for stack, values in outputs.items():
        parsed = parse_outputs(stack, values)
        assert str(parsed.address) == ADDRESSES[stack]
    assert {"dns", "tsig_key", "controller_credentials"} <= outputs["aws-primary"].keys()
    assert {"provision", "agent_config"} <= outputs["spare"].keys()


def test_the_config_loads_and_names_its_secrets_by_file(
        tmp_path: Path, outputs: Outputs, token: Path) -> None:
    out = tmp_path / "deploy" / "failover.yaml"
    out.parent.mkdir()
    result = from_stacks(tmp_path, outputs, "--out", str(out), "--hcloud-token-file", str(token))
    assert result.exit_code == 0, result.output
    config = load_config(out)
    assert set(config.sites) == {"aws", "hetzner"} and set(config.spares) == {"spare"}
    assert set(config.dns_providers) == {"route53", "rfc2136"}
    assert config.backups is not None and set(config.backups.repositories) == {
        "aws", "hetzner", "spare"}
    secrets = out.parent / "secrets"
    assert mode(secrets) == 0o700
    assert {mode(f) for f in secrets.iterdir()} == {0o600}
    # Named relative to the file, as the lab's config names its secrets.
    raw = yaml.safe_load(out.read_text())
    assert raw["sites"]["aws"]["compute"]["secret_file"] == "secrets/aws-agent.secret"
    aws = outputs["aws-primary"]
    compute = config.sites["aws"].compute
    assert compute is not None
    assert agent_secret(compute.secret_file).decode() == aws["agent_secret"]
    api = config.sites["aws"].api
    assert api is not None and api.kind == "ec2" and api.credentials_file is not None
    assert load_credentials(api.credentials_file)["aws_secret_access_key"] == \
        aws["controller_credentials"]["secret_access_key"]
    tsig = config.dns_providers["rfc2136"]
    assert tsig.kind == "rfc2136"
    assert TsigKey.load(tsig.tsig_key_file) == TsigKey(**aws["tsig_key"])
    assert config.spares["spare"].requirement == "failover==0.1.0"


def test_the_config_holds_no_secret(tmp_path: Path, outputs: Outputs, token: Path) -> None:
    result = from_stacks(tmp_path, outputs, "--hcloud-token-file", str(token),
                         "--secrets-dir", str(tmp_path / "keys"))
    assert result.exit_code == 0, result.output
    text = result.stdout
    secrets = set().union(*(secret_strings(values) for values in outputs.values()))
    assert len(secrets) > 10  # the agents' secrets, the keys, the TSIG key
    assert text.startswith("# written by `failover config from-stacks`")
    assert [s for s in secrets if s in text] == []
    # Printed, it names its files whole: it may be saved anywhere.
    assert f"secret_file: {tmp_path / 'keys' / 'aws-agent.secret'}" in text


def test_failover_status_accepts_the_config(tmp_path: Path, outputs: Outputs,
                                            token: Path) -> None:
    out = tmp_path / "failover.yaml"
    assert from_stacks(tmp_path, outputs, "--out", str(out),
                       "--hcloud-token-file", str(token)).exit_code == 0
    status = subprocess.run([sys.executable, "-m", "failover", "status", "--config", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    # 1: a warning (nothing answers at the mocked addresses); 2 would be a config error.
    assert status.returncode == 1, status.stderr
    assert status.stdout.startswith(f"primary: NONE   ({out})")
    assert "unreachable" in status.stdout


def _without(outputs: Outputs, stack: str, *path: str) -> Outputs:
    broken = copy.deepcopy(outputs)
    where = broken[stack]
    for key in path[:-1]:
        where = where[key]
    del where[path[-1]]
    return broken


@pytest.mark.parametrize(("change", "message"), [
    (lambda o: _without(o, "hetzner-standby", "database", "port"),
     "stack hetzner-standby: output database.port: is required"),
    (lambda o: {**o, "spare": {**o["spare"], "agent_secret": "[secret]"}},
     "stack spare: output agent_secret: is masked ([secret]); take the outputs with their "
     "secrets (--show-secrets)"),
    (lambda o: {**o, "aws-primary": {**o["aws-primary"], "address": "not-an-ip"}},
     "stack aws-primary: output address: value is not a valid IPv4 or IPv6 address"),
    (lambda o: _without(o, "aws-primary", "dns"),
     "exactly one stack must export dns (the zone), found 0: none"),
    (lambda o: {**o, "spare": {**o["spare"], "site": "hetzner"}},
     "stack spare: output site: 'hetzner' is also the site of stack hetzner-standby"),
])
def test_bad_outputs_are_one_line_and_write_nothing(
        tmp_path: Path, outputs: Outputs, token: Path, change: Any, message: str) -> None:
    out = tmp_path / "failover.yaml"
    result = from_stacks(tmp_path, change(outputs), "--out", str(out),
                         "--hcloud-token-file", str(token))
    assert (result.exit_code, result.stderr) == (2, f"failover: error: {message}\n")
    assert not out.exists() and not (tmp_path / "secrets").exists()


def test_a_config_the_models_refuse_is_not_written(
        tmp_path: Path, outputs: Outputs, token: Path) -> None:
    # Every repository at AWS: the hetzner site is fine, the aws one would lose its backups.
    broken = {stack: {k: v for k, v in values.items()
                      if k not in ("repositories", "repository_credentials")}
              for stack, values in outputs.items()}
    broken["aws-primary"] |= {k: outputs["aws-primary"][k]
                              for k in ("repositories", "repository_credentials")}
    out = tmp_path / "failover.yaml"
    result = from_stacks(tmp_path, broken, "--out", str(out), "--hcloud-token-file", str(token))
    assert result.exit_code == 2
    assert "backups.repositories: none is at a provider other than aws, site 'aws''s" \
        in result.stderr
    assert not out.exists() and not (tmp_path / "secrets").exists()


def test_a_file_already_there_is_not_overwritten_without_force(
        tmp_path: Path, outputs: Outputs, token: Path) -> None:
    out = tmp_path / "failover.yaml"
    out.write_text("# edited by hand\n")
    result = from_stacks(tmp_path, outputs, "--out", str(out), "--hcloud-token-file", str(token))
    assert (result.exit_code, result.stderr) == (2, (
        f"failover: error: would overwrite {out}, losing what is there now (edits made since, "
        "another deployment's keys); pass --force to replace\n"))
    assert out.read_text() == "# edited by hand\n"
    assert not (tmp_path / "secrets").exists()  # refused before anything was written


def test_secret_files_already_there_are_named_and_not_overwritten_without_force(
        tmp_path: Path, outputs: Outputs, token: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    write_private(keys / "tsig.key", "an older deployment's key\n")
    write_private(keys / "aws-agent.secret", "an older agent's secret\n")
    result = from_stacks(tmp_path, outputs, "--secrets-dir", str(keys),
                         "--hcloud-token-file", str(token))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(
        f"failover: error: would overwrite 2 secret files in {keys} (aws-agent.secret, "
        "tsig.key), losing")
    assert sorted(p.name for p in keys.iterdir()) == ["aws-agent.secret", "tsig.key"]


def test_with_force_the_files_are_replaced_whole(
        tmp_path: Path, outputs: Outputs, token: Path) -> None:
    out = tmp_path / "failover.yaml"
    args = ("--out", str(out), "--hcloud-token-file", str(token))
    assert from_stacks(tmp_path, outputs, *args).exit_code == 0
    secret = tmp_path / "secrets" / "aws-agent.secret"
    write_private(secret, "an older agent's secret\n")
    with secret.open() as reader:  # a controller reading it as it is replaced
        result = from_stacks(tmp_path, outputs, *args, "--force")
        assert result.exit_code == 0, result.output
        assert reader.read() == "an older agent's secret\n"  # replaced, not truncated
    assert secret.read_text() == outputs["aws-primary"]["agent_secret"] + "\n"
    assert mode(secret) == 0o600 and mode(out) == 0o644
    assert load_config(out).sites["aws"].address is not None


def test_the_file_s_folder_must_exist(tmp_path: Path, outputs: Outputs) -> None:
    result = from_stacks(tmp_path, outputs, "--out", str(tmp_path / "no" / "failover.yaml"))
    assert (result.exit_code, result.stderr) == (
        2, f"failover: error: --out: {tmp_path / 'no'} is not a directory\n")


def test_a_spare_needs_the_hetzner_token(tmp_path: Path, outputs: Outputs) -> None:
    result = from_stacks(tmp_path, outputs)
    assert (result.exit_code, result.stderr) == (2, (
        "failover: error: stack spare: spare spare is made through Hetzner Cloud's API: give "
        "its project's token with --hcloud-token-file\n"))


def test_asking_the_stacks_without_pulumi_says_how_to_get_it(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = CliRunner(env={"PATH": str(empty)}).invoke(
        cli, ["config", "from-stacks", "--stack", "aws-primary",
              "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2
    assert result.stderr.startswith("failover: error: the Pulumi CLI is not installed")
