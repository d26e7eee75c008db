"""A site's host at AWS EC2, made with boto3: idempotent by name tag.

The same order and rules as at Hetzner (``provision.hcloud``): the Elastic IP
first (the site's address), a security group that opens the app's port to
everyone and the database and agent ports only to the addresses given, then
the instance with the cloud-init user-data, and the address associated with
it. Every resource carries ``Name=failover-<site>`` and ``failover-site=<site>``
and is looked up by them before it is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from failover.aws import load_credentials
from failover.exceptions import ProviderError
from failover.provision.config import Ec2ProvisionConfig
from failover.provision.network import cidr

PROVIDER = "ec2"



class Ec2Host:
    """Makes (or finds) the resources of one site's host in an AWS account."""

    def __init__(self, config: Ec2ProvisionConfig, site: str) -> None:
        self.config = config
        self.site = site
        self.name = f"failover-{site}"
        creds = load_credentials(config.credentials_file) if config.credentials_file else {}
        # Any: the calls below pass filters and tags built as plain dicts.
        self.client: Any = boto3.session.Session().client(
            "ec2", endpoint_url=config.endpoint_url, region_name=config.region,
            aws_access_key_id=creds.get("aws_access_key_id"),
            aws_secret_access_key=creds.get("aws_secret_access_key"),
            aws_session_token=creds.get("aws_session_token"),
            config=Config(connect_timeout=min(5.0, config.timeout),
                          read_timeout=config.timeout, retries={"mode": "standard"}))

    def _tags(self, kind: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": self.name},
                                                {"Key": "failover-site", "Value": self.site}]}]

    def _call(self, doing: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ProviderError(f"ec2 {doing}: {error.get('Code')}: {error.get('Message')}",
                                provider=PROVIDER, code=str(error.get("Code"))) from None
        except BotoCoreError as exc:
            raise ProviderError(f"ec2 {doing}: {exc}", provider=PROVIDER,
                                code="UNREACHABLE") from None

    def _mine(self) -> list[dict[str, Any]]:
        return [{"Name": "tag:failover-site", "Values": [self.site]}]

    def ensure(self, user_data: str, *, app_port: int, private_ports: Sequence[int],
               sources: Sequence[str], say: Callable[[str], None]) -> dict[str, Any]:
        """Make what is missing; the instance's id, its address and what was made now."""
        c, made = self.client, []
        addresses = self._call("describe addresses", lambda: c.describe_addresses(
            Filters=self._mine())["Addresses"])
        if addresses:
            address = addresses[0]
        else:
            say(f"allocating Elastic IP {self.name}")
            address = self._call("allocate address", lambda: c.allocate_address(
                Domain="vpc", TagSpecifications=self._tags("elastic-ip")))
            made.append("elastic_ip")
        groups = self._call("describe security groups", lambda: c.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [self.name]}])["SecurityGroups"])
        if groups:
            group_id = groups[0]["GroupId"]
        else:
            say(f"creating security group {self.name}")
            group_id = self._call("create security group", lambda: c.create_security_group(
                GroupName=self.name, Description=f"failover site {self.site}",
                TagSpecifications=self._tags("security-group"))["GroupId"])
            permissions = [{"IpProtocol": "tcp", "FromPort": app_port, "ToPort": app_port,
                            "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
            cidrs = sorted({cidr(s) for s in sources})
            if cidrs:
                permissions += [{"IpProtocol": "tcp", "FromPort": p, "ToPort": p,
                                 "IpRanges": [{"CidrIp": block} for block in cidrs]}
                                for p in private_ports]
            self._call("authorize ingress", lambda: c.authorize_security_group_ingress(
                GroupId=group_id, IpPermissions=permissions))
            made.append("security_group")
        instance = self._instance()
        if instance is None:
            say(f"launching instance {self.name} ({self.config.instance_type}, "
                f"{self.config.image_id})")
            extra = {"SubnetId": self.config.subnet_id} if self.config.subnet_id else {}
            instance = self._call("run instances", lambda: c.run_instances(
                ImageId=self.config.image_id, InstanceType=self.config.instance_type,
                MinCount=1, MaxCount=1, UserData=user_data, SecurityGroupIds=[group_id],
                TagSpecifications=self._tags("instance"), **extra)["Instances"][0])
            made.append("instance")
        instance_id = instance["InstanceId"]
        if address.get("InstanceId") != instance_id:
            say(f"associating {address['PublicIp']} with {instance_id}")
            self._call("wait for running", lambda: c.get_waiter("instance_running").wait(
                InstanceIds=[instance_id], WaiterConfig={"Delay": 2, "MaxAttempts": 60}))
            self._call("associate address", lambda: c.associate_address(
                AllocationId=address["AllocationId"], InstanceId=instance_id))
        return {"server_id": instance_id, "server": self.name, "address": address["PublicIp"],
                "allocation_id": address["AllocationId"], "security_group_id": group_id,
                "made": made}

    def _instance(self) -> dict[str, Any] | None:
        """The site's instance that is not terminated (or on its way there), if any."""
        reservations = self._call("describe instances", lambda: self.client.describe_instances(
            Filters=[*self._mine(), {"Name": "instance-state-name",
                                     "Values": ["pending", "running", "stopping", "stopped"]}]
        )["Reservations"])
        found = [i for r in reservations for i in r["Instances"]]
        return found[0] if found else None

    def destroy_server(self) -> bool:
        """Terminate the instance (the Elastic IP stays: it is the site's reserved address)."""
        instance = self._instance()
        if instance is None:
            return False
        self._call("terminate", lambda: self.client.terminate_instances(
            InstanceIds=[instance["InstanceId"]]))
        return True
