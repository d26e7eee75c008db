"""A spare's host made at EC2 (a real moto server): Elastic IP, security group, instance."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import boto3
import pytest

from failover.exceptions import ProviderError
from failover.processes import stop
from failover.provision.config import Ec2ProvisionConfig
from failover.provision.ec2 import Ec2Host
from failover.secretfiles import write_private
from tests.conftest import starts_servers
from tests.failover.data.test_objects import start_moto

pytestmark = pytest.mark.lab  # a moto server, started and stopped by PID here


@pytest.fixture(scope="module")
@starts_servers
def ec2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2ProvisionConfig]:
    """An EC2 account on a moto server of the module's own, with an AMI to boot."""
    folder = tmp_path_factory.mktemp("ec2")
    record, url = start_moto("moto-ec2", folder)
    try:
        creds = folder / "aws-credentials"
        write_private(creds, "[default]\naws_access_key_id = testing\n"
                             "aws_secret_access_key = testing-secret\n")
        client = boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="x")
        image = client.describe_images()["Images"][0]["ImageId"]
        yield Ec2ProvisionConfig(kind="ec2", endpoint_url=url, region="us-east-1",
                                 credentials_file=creds, image_id=image, timeout=10)
    finally:
        stop(record)


def test_a_host_is_made_once_with_only_the_app_open_to_all(ec2: Ec2ProvisionConfig) -> None:
    said: list[str] = []
    host = Ec2Host(ec2, "spare")
    made = host.ensure("#cloud-config\n", app_port=8080, private_ports=[5432, 7070],
                       sources=["10.0.10.1", "10.0.20.0/24"], say=said.append)
    assert made["made"] == ["elastic_ip", "security_group", "instance"]
    c = host.client
    instance = c.describe_instances(InstanceIds=[made["server_id"]])["Reservations"][0][
        "Instances"][0]
    assert instance["PublicIpAddress"] == made["address"]
    data = c.describe_instance_attribute(InstanceId=made["server_id"], Attribute="userData")
    assert base64.b64decode(data["UserData"]["Value"]).decode() == "#cloud-config\n"
    group = c.describe_security_groups(GroupIds=[made["security_group_id"]])["SecurityGroups"][0]
    opened = {p["FromPort"]: sorted(r["CidrIp"] for r in p["IpRanges"])
              for p in group["IpPermissions"]}
    assert opened == {8080: ["0.0.0.0/0"], 5432: ["10.0.10.1/32", "10.0.20.0/24"],
                      7070: ["10.0.10.1/32", "10.0.20.0/24"]}
    again = host.ensure("#cloud-config\n", app_port=8080, private_ports=[5432, 7070],
                        sources=[], say=said.append)
    assert again["made"] == [] and again["server_id"] == made["server_id"]
    assert host.destroy_server() and not host.destroy_server()  # gone: nothing to delete
    address = c.describe_addresses(AllocationIds=[made["allocation_id"]])["Addresses"]
    assert address and address[0]["PublicIp"] == made["address"]  # the address stays


def test_a_refusal_is_one_line_naming_the_call(ec2: Ec2ProvisionConfig) -> None:
    bad = ec2.model_copy(update={"subnet_id": "subnet-00000000"})
    with pytest.raises(ProviderError, match="ec2 run instances: InvalidSubnetID"):
        Ec2Host(bad, "other").ensure("", app_port=80, private_ports=[], sources=[],
                                     say=lambda _m: None)
