"""A real deployment's faults through its providers' APIs: a server powered off and on.

EC2 is moto's, in this process (``mock_aws``: no server, so the unit layer);
Hetzner is the lab's fake Hetzner Cloud API, run in this process by uvicorn
(the fixture of tests/infra/lab/test_hcloud_fake.py), so those tests are lab.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from failover.exceptions import ConfigError, ProviderError
from failover.secretfiles import write_private
from failover.watch.providers.ec2 import Ec2ApiConfig
from failover.watch.providers.hcloud import HcloudApiConfig
from infra.providers.cloud_faults import CloudFaults, Ec2Power, HcloudPower, Machine
from tests.infra.lab.test_hcloud_fake import TOKEN, Fake, fake  # noqa: F401  (a fixture)

REGION = "eu-central-1"
IMAGE = "ami-0a1b2c3d4e5f60718"  # moto does not check it
KEYS = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "s" * 40}


@pytest.fixture
def ec2() -> Iterator[Ec2Power]:
    """An EC2 account (moto, in process) with one instance named aws-app."""
    with mock_aws():
        client = boto3.session.Session().client("ec2", region_name=REGION, **KEYS)
        run("aws-app", client)
        yield Ec2Power(client, poll=1, timeout=5)


def run(name: str, client: object) -> str:
    """Start an instance tagged Name=``name``; its id."""
    answer = client.run_instances(  # type: ignore[attr-defined]
        ImageId=IMAGE, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": name}]}])
    instance: str = answer["Instances"][0]["InstanceId"]
    return instance


def test_an_instance_is_stopped_and_started_by_its_name(ec2: Ec2Power) -> None:
    stopped = ec2.power_off("aws-app")
    assert stopped.startswith("EC2: instance aws-app (i-") and " stopped (" in stopped
    assert ec2.state("aws-app") == "stopped"
    assert ec2.power_off("aws-app").endswith("is already stopped; left as it is")

    started = ec2.power_on("aws-app")
    assert " started (" in started and "\n" not in started
    assert ec2.state("aws-app") == "running"
    assert ec2.power_on("aws-app").endswith("is already running; left as it is")


def test_an_instance_is_stopped_by_its_id(ec2: Ec2Power) -> None:
    other = run("other", ec2.client)
    assert ec2.power_off(other).startswith(f"EC2: instance {other} stopped")
    assert (ec2.state(other), ec2.state("aws-app")) == ("stopped", "running")


def test_an_unknown_or_ambiguous_instance_is_one_line(ec2: Ec2Power) -> None:
    with pytest.raises(ProviderError, match=r"^EC2: no instance 'nope' in region eu-central-1$") \
            as unknown:
        ec2.power_off("nope")
    assert (unknown.value.provider, unknown.value.code) == ("ec2", "not_found")
    with pytest.raises(ProviderError, match=r"InvalidInstanceID\.NotFound") as no_id:
        ec2.power_on("i-0123456789abcdef0")
    assert no_id.value.code == "InvalidInstanceID.NotFound"

    run("aws-app", ec2.client)
    with pytest.raises(ProviderError, match="2 instances are named 'aws-app'") as twice:
        ec2.power_off("aws-app")
    assert twice.value.code == "ambiguous"


def test_a_refused_key_is_one_line(ec2: Ec2Power) -> None:
    @set_initial_no_auth_action_count(0)  # from here on moto checks keys against its IAM
    def stop() -> str:
        return ec2.power_off("aws-app")

    with pytest.raises(ProviderError, match=r"^EC2 stop aws-app: AuthFailure: ") as refused:
        stop()
    assert refused.value.code == "AuthFailure" and "\n" not in str(refused.value)


def test_ec2_from_a_sites_config_reads_its_keys(tmp_path: Path) -> None:
    creds = tmp_path / "ec2-credentials"
    write_private(creds, "[default]\n" + "".join(f"{k} = {v}\n" for k, v in KEYS.items()))
    with mock_aws():
        power = Ec2Power.from_config(Ec2ApiConfig(kind="ec2", region=REGION,
                                                  credentials_file=creds), poll=1)
        instance = run("aws-app", power.client)
        assert power.client.meta.region_name == REGION
        assert power.power_off(instance).startswith(f"EC2: instance {instance} stopped")


def test_a_site_is_killed_and_revived_through_its_server(ec2: Ec2Power) -> None:
    faults = CloudFaults({"aws": Machine(ec2, "aws-app")})
    assert faults.kill_site("aws").startswith("aws: EC2: instance aws-app (i-")
    assert ec2.state("aws-app") == "stopped"
    assert " started (" in faults.power_on_site("aws")
    with pytest.raises(ConfigError, match="no server is known for site 'hetzner' "
                                          r"\(known: aws\)"):
        faults.kill_site("hetzner")


# -- Hetzner Cloud, against the lab's fake -------------------------------------------------------


def hcloud(api: Fake, token: str = TOKEN) -> HcloudPower:
    """The switch over the fake's project, with hcloud's retries off (as the fake's tests)."""
    return HcloudPower(api.client(token), timeout=5, poll=0.1)


@pytest.mark.lab  # uvicorn
def test_a_server_is_powered_off_and_on_by_its_name(fake: Fake) -> None:  # noqa: F811
    power = hcloud(fake)
    off = power.power_off("web-0")
    assert off.startswith("hcloud: server web-0 (id 4711) powered off (action ")
    assert power.state("web-0") == "off"
    assert power.power_off("web-0") == ("hcloud: server web-0 (id 4711) is already off; "
                                        "left as it is")
    assert power.state("web-1") == "running"  # only the one named

    assert " powered on (action " in power.power_on("web-0")
    assert power.state("web-0") == "running"
    assert power.power_on("web-0").endswith("is already running; left as it is")


@pytest.mark.lab  # uvicorn
def test_an_unknown_server_or_a_refused_token_is_one_line(fake: Fake) -> None:  # noqa: F811
    with pytest.raises(ProviderError, match=r"^hcloud: no server named 'db-9' in this project$") \
            as unknown:
        hcloud(fake).power_off("db-9")
    assert (unknown.value.provider, unknown.value.code) == ("hcloud", "not_found")

    with pytest.raises(ProviderError, match=r"^hcloud power off web-0: unauthorized: ") \
            as refused:
        hcloud(fake, "not-the-token").power_off("web-0")
    assert refused.value.code == "unauthorized" and "\n" not in str(refused.value)

    fake.control("block")
    with pytest.raises(ProviderError, match=r"^hcloud power on web-0: forbidden: ") as blocked:
        hcloud(fake).power_on("web-0")
    assert blocked.value.code == "forbidden"


@pytest.mark.lab  # uvicorn
def test_an_action_that_fails_or_never_ends_is_one_line(fake: Fake) -> None:  # noqa: F811
    finish = fake.project.read_action

    def fails(action_id: int) -> dict[str, Any]:
        return {**finish(action_id), "status": "error",
                "error": {"code": "action_failed", "message": "the host did not answer"}}

    fake.project.read_action = fails  # type: ignore[method-assign]
    with pytest.raises(ProviderError, match=r"^hcloud power off web-0: action \d+ ended error: "
                       "action_failed: the host did not answer$"):
        hcloud(fake).power_off("web-0")

    def runs_on(action_id: int) -> dict[str, Any]:
        return {**fake.project.actions[action_id], "status": "running"}

    fake.project.read_action = runs_on  # type: ignore[method-assign]
    power = HcloudPower(fake.client(), timeout=0.3, poll=0.05)
    with pytest.raises(ProviderError, match=r"still running after 0\.3 s$") as late:
        power.power_off("web-1")
    assert late.value.code == "timeout"


@pytest.mark.lab  # uvicorn
def test_hcloud_from_a_sites_config_reads_its_token(fake: Fake,  # noqa: F811
                                                    tmp_path: Path) -> None:
    token_file = tmp_path / "hcloud-token"
    write_private(token_file, TOKEN + "\n")
    power = HcloudPower.from_config(HcloudApiConfig(kind="hcloud", endpoint=fake.url,
                                                    token_file=token_file), poll=0.1)
    assert " powered off " in power.power_off("web-2")

    write_private(token_file, "\n")
    with pytest.raises(ConfigError, match="is empty"):
        HcloudPower.from_config(HcloudApiConfig(kind="hcloud", endpoint=fake.url,
                                                token_file=token_file))
