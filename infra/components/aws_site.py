"""A site at AWS: network, firewall, host, address, bucket, and the controller's key.

Named and tagged as ``failover rebuild`` names what it makes at EC2
(``failover-<site>``, ``failover-site=<site>``), so the two never disagree on
what belongs to a site.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.agent import AgentArgs, SiteAgent
from infra.components.rules import Ingress
from infra.components.settings import AwsHost
from infra.components.storage import (
    ApiUser,
    ApiUserArgs,
    BucketArgs,
    VersionedBucket,
    bucket_policy,
)

DEBIAN_ACCOUNT = "136693071363"  # Debian's own AMIs (wiki.debian.org/Cloud/AmazonEC2Image)
DEBIAN_12 = "debian-12-amd64-*"
# What `failover watch` asks EC2 (DescribeInstances): read-only, and nothing else.
# DescribeInstanceAttribute is a Describe too, but it hands out an instance's user-data,
# which carries the agent's secret: with it, the controller's key (kept on the machine
# `failover watch` runs on) would open every agent. An explicit Deny wins over the Allow.
USER_DATA_ACTION = "ec2:DescribeInstanceAttribute"
CONTROLLER_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
    {"Effect": "Deny", "Action": USER_DATA_ACTION, "Resource": "*"}]})


@dataclass(frozen=True)
class AwsSiteArgs:
    """One AWS site: its host's settings, its firewall rules, its bucket, its agent."""

    site: str
    host: AwsHost
    rules: Sequence[Ingress]
    bucket: str
    agent: AgentArgs
    ssh_public_key: str | None = None  # the operators' key, for Debian's `admin` user


class AwsSite(pulumi.ComponentResource):
    """A VPC and subnet, a security group, an EC2 host running the agent, an Elastic IP,
    a versioned bucket, IAM users for the controller and for the bucket, and the
    operators' SSH key when one is given."""

    def __init__(self, name: str, args: AwsSiteArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("failover:infra:AwsSite", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {"Name": f"failover-{args.site}", "failover-site": args.site}
        subnet, group = self._network(name, args, tags, child)
        self.agent = SiteAgent(f"{name}-agent", args.agent, opts=child)
        image = args.host.image or aws.ec2.get_ami_output(
            most_recent=True, owners=[DEBIAN_ACCOUNT],
            filters=[aws.ec2.GetAmiFilterArgs(name="name", values=[DEBIAN_12])],
            opts=pulumi.InvokeOutputOptions(parent=self)).id
        key = None if args.ssh_public_key is None else aws.ec2.KeyPair(
            f"{name}-ssh", key_name=f"failover-{args.site}", public_key=args.ssh_public_key,
            tags=tags, opts=child)
        self.instance = aws.ec2.Instance(
            f"{name}-host", ami=image, instance_type=args.host.instance_type,
            subnet_id=subnet.id, vpc_security_group_ids=[group.id],
            # A route out from the first boot: cloud-init's apt and pip run before the
            # Elastic IP is associated (it needs the instance first), and a host without a
            # public address has no way out through the Internet gateway.
            associate_public_ip_address=True,
            user_data=self.agent.user_data, tags=tags,
            key_name=key.key_name if key is not None else None,
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_size=args.host.disk_gb, volume_type="gp3", encrypted=True),
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required"),
            # The database lives on this host: a newer Debian AMI, a changed user-data or
            # SSH key must never replace it. A new host is `failover rebuild`'s business.
            opts=pulumi.ResourceOptions(parent=self,
                                        ignore_changes=["ami", "user_data", "key_name"]))
        self.ip = aws.ec2.Eip(f"{name}-ip", domain="vpc", tags=tags, opts=child)
        aws.ec2.EipAssociation(f"{name}-ip-host", allocation_id=self.ip.allocation_id,
                               instance_id=self.instance.id, opts=child)
        self.media = VersionedBucket(f"{name}-media", BucketArgs(args.bucket), opts=child)
        self.controller = ApiUser(f"{name}-controller", ApiUserArgs(
            f"failover-{args.site}-controller", CONTROLLER_POLICY), opts=child)
        self.storage = ApiUser(f"{name}-storage", ApiUserArgs(
            f"failover-{args.site}-storage", bucket_policy([self.media.arn])), opts=child)
        self.address: pulumi.Output[str] = self.ip.public_ip
        self.register_outputs({"address": self.address, "bucket": self.media.name,
                               "instance": self.instance.id})

    def _network(self, name: str, args: AwsSiteArgs, tags: dict[str, str],
                 child: pulumi.ResourceOptions) -> tuple[aws.ec2.Subnet, aws.ec2.SecurityGroup]:
        """The VPC, its public subnet and route out, and the security group with the rules."""
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.host.vpc_cidr,
                          enable_dns_hostnames=True, enable_dns_support=True, tags=tags,
                          opts=child)
        subnet = aws.ec2.Subnet(f"{name}-subnet", vpc_id=vpc.id,
                                cidr_block=args.host.subnet_cidr, map_public_ip_on_launch=True,
                                tags=tags, opts=child)
        gateway = aws.ec2.InternetGateway(f"{name}-gateway", vpc_id=vpc.id, tags=tags,
                                          opts=child)
        routes = aws.ec2.RouteTable(f"{name}-routes", vpc_id=vpc.id, tags=tags, routes=[
            aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            opts=child)
        aws.ec2.RouteTableAssociation(f"{name}-routes-subnet", subnet_id=subnet.id,
                                      route_table_id=routes.id, opts=child)
        group = aws.ec2.SecurityGroup(
            f"{name}-firewall", name=f"failover-{args.site}", vpc_id=vpc.id, tags=tags,
            description=f"failover site {args.site}: the app open, the rest to named "
                        "addresses only", opts=child)
        for rule in args.rules:
            for source in rule.sources:
                family = ipaddress.ip_network(source).version
                # Named by port and source, not position: reordering replaces nothing.
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-in-{rule.port}-{re.sub(r'[^0-9a-f]+', '-', source).strip('-')}",
                    security_group_id=group.id, ip_protocol="tcp", from_port=rule.port,
                    to_port=rule.port, description=rule.description,
                    cidr_ipv4=source if family == 4 else None,
                    cidr_ipv6=source if family == 6 else None, opts=child)
        # Out: packages, pip, the other sites, the object stores.
        aws.vpc.SecurityGroupEgressRule(f"{name}-out", security_group_id=group.id,
                                        ip_protocol="-1", cidr_ipv4="0.0.0.0/0", opts=child)
        return subnet, group
