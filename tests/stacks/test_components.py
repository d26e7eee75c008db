"""What each component makes, under Pulumi's mocks: the resources and the inputs that matter."""

from __future__ import annotations

import base64
import json
from typing import Any

import pulumi_aws as aws
import pytest
import yaml

from failover.agent.config import AgentConfig
from failover.dns.tsig import TsigKey
from tests.stacks.mocked import (
    ADDRESSES,
    ADMIN,
    CONTROLLER,
    HETZNER_KEYS,
    Deployed,
    deploy,
    deploy_site,
    is_secret,
    plain,
)
from tests.stacks.policies import SG_RULE, openings

STACKS = ("aws-primary", "hetzner-standby", "spare")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockMockMockMockMockMockMockMockMockMockMo op@desk"
AWS, HETZNER, SPARE = (ADDRESSES[s] for s in STACKS)


@pytest.fixture(scope="module")
def deployed() -> dict[str, Deployed]:
    """The checked-in stacks, each deployed under mocks."""
    return {stack: deploy_site(stack) for stack in STACKS}


def _policy(made: Deployed, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(plain(made.one_named(name).inputs["policy"]))
    return document


def _firewall(made: Deployed) -> set[tuple[int, str]]:
    return {(o.low, o.source) for o in openings(made.made)}


def _expected_firewall(me: str) -> set[tuple[int, str]]:
    """What every site's host lets in: the app from anywhere, the rest from named addresses."""
    others = {f"{a}/32" for a in (AWS, HETZNER, SPARE) if a != me}
    controller = {f"{CONTROLLER}/32"}
    return ({(8080, "0.0.0.0/0"), (8080, "::/0"), (22, ADMIN)}
            | {(5432, s) for s in others | controller}
            | {(7070, s) for s in others | controller | {ADMIN}})


def _agent_config(user_data: str) -> AgentConfig:
    files = {f["path"]: f for f in yaml.safe_load(user_data)["write_files"]}
    return AgentConfig.model_validate(yaml.safe_load(files["/etc/failover/agent.yaml"]
                                                     ["content"]))


def test_every_resource_belongs_to_a_component_that_registers_its_outputs(
        deployed: dict[str, Deployed]) -> None:
    for stack in deployed.values():
        components = {typ for typ, _ in stack.parents if typ.startswith("failover:infra:")}
        top = {typ for (typ, _), parent in stack.parents.items() if parent == "pulumi:pulumi:Stack"}
        assert top <= components  # nothing made outside a component
        assert {parent for (typ, _), parent in stack.parents.items()
                if typ not in components} <= components  # children made with parent=self
        assert components <= stack.with_outputs


def test_nothing_deprecated_is_used(deployed: dict[str, Deployed]) -> None:
    assert [warning for stack in deployed.values() for warning in stack.warnings] == []
    # What the check would see: the SDK's own word on a deprecated resource.
    old = deploy(lambda: {"bucket": aws.s3.BucketV2("old", bucket="old").bucket},
                 stack="aws-primary")
    assert old.warnings == [
        "BucketV2 is deprecated: s3.BucketV2 has been deprecated in favor of s3.Bucket"]


# -- AwsSite ------------------------------------------------------------------------------

def test_an_aws_site_has_a_network_of_its_own_with_a_route_out(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    vpc, subnet = aws.one("aws:ec2/vpc:Vpc"), aws.one("aws:ec2/subnet:Subnet")
    gateway = aws.one("aws:ec2/internetGateway:InternetGateway")
    routes = aws.one("aws:ec2/routeTable:RouteTable")
    association = aws.one("aws:ec2/routeTableAssociation:RouteTableAssociation")
    assert (vpc.inputs["cidrBlock"], subnet.inputs["cidrBlock"]) == ("10.20.0.0/16",
                                                                     "10.20.1.0/24")
    assert subnet.inputs["vpcId"] == gateway.inputs["vpcId"] == vpc.id
    assert routes.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": gateway.id}]
    assert (association.inputs["subnetId"], association.inputs["routeTableId"]) == (
        subnet.id, routes.id)


def test_an_aws_site_s_host_has_a_public_address_from_its_first_boot(
        deployed: dict[str, Deployed]) -> None:
    # cloud-init installs packages before the Elastic IP can be associated.
    aws = deployed["aws-primary"]
    assert aws.one("aws:ec2/subnet:Subnet").inputs["mapPublicIpOnLaunch"] is True
    assert aws.one("aws:ec2/instance:Instance").inputs["associatePublicIpAddress"] is True


def test_an_aws_site_s_host_boots_debian_with_secret_user_data_behind_an_elastic_ip(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    host, ip = aws.one("aws:ec2/instance:Instance"), aws.one("aws:ec2/eip:Eip")
    association = aws.one("aws:ec2/eipAssociation:EipAssociation")
    group = aws.one("aws:ec2/securityGroup:SecurityGroup")
    assert host.inputs["ami"] == "ami-0mockdebian12"  # the newest Debian 12, looked up
    assert host.inputs["instanceType"] == "t3.small"
    assert host.inputs["vpcSecurityGroupIds"] == [group.id]
    assert host.inputs["metadataOptions"] == {"httpTokens": "required"}  # IMDSv2 only
    assert host.inputs["rootBlockDevice"]["encrypted"] is True
    assert is_secret(host.inputs["userData"])
    assert _agent_config(plain(host.inputs["userData"])).site == "aws"
    assert ip.inputs["domain"] == "vpc"
    assert association.inputs["instanceId"] == host.id
    assert aws.outputs["address"] == AWS


def test_an_aws_host_gets_the_operators_ssh_key_when_one_is_given() -> None:
    aws = deploy_site("aws-primary", failover_sshPublicKey=SSH_KEY)
    key = aws.one("aws:ec2/keyPair:KeyPair")
    assert (key.inputs["keyName"], key.inputs["publicKey"]) == ("failover-aws", SSH_KEY)
    assert aws.one("aws:ec2/instance:Instance").inputs["keyName"] == "failover-aws"


def test_an_aws_host_without_an_ssh_key_setting_has_no_key(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    assert not aws.of_type("aws:ec2/keyPair:KeyPair")
    assert "keyName" not in aws.one("aws:ec2/instance:Instance").inputs


def test_an_aws_site_opens_the_app_to_all_and_the_rest_to_named_addresses(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    assert _firewall(aws) == _expected_firewall(AWS)
    group = aws.one("aws:ec2/securityGroup:SecurityGroup")
    assert {r.inputs["securityGroupId"] for r in aws.of_type(SG_RULE)} == {group.id}


def test_the_controller_may_describe_ec2_and_nothing_more(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    assert _policy(aws, "aws-controller-policy") == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:DescribeInstanceAttribute", "Resource": "*"}]}
    assert aws.one_named("aws-controller-key").inputs["user"] == "failover-aws-controller"
    assert aws.outputs["controller_credentials"]["access_key_id"] == "aws-controller-key-id"


def test_the_site_s_storage_keys_reach_its_bucket_alone(deployed: dict[str, Deployed]) -> None:
    statements = _policy(deployed["aws-primary"], "aws-storage-policy")["Statement"]
    bucket = "arn:aws:s3:::change-me-failover-media-aws"
    assert [s["Resource"] for s in statements] == [[bucket], [f"{bucket}/*"]]


# -- HetznerSite --------------------------------------------------------------------------

def test_a_hetzner_site_names_what_it_makes_as_a_rebuild_looks_for_it(
        deployed: dict[str, Deployed]) -> None:
    for stack, site in (("hetzner-standby", "hetzner"), ("spare", "spare")):
        made = deployed[stack]
        for typ in ("primaryIp:PrimaryIp", "firewall:Firewall", "network:Network"):
            resource = made.one(f"hcloud:index/{typ}")
            assert resource.inputs["name"] == f"failover-{site}"
            assert resource.inputs["labels"] == {"failover-site": site}
        ip = made.one("hcloud:index/primaryIp:PrimaryIp")
        assert (ip.inputs["type"], ip.inputs["autoDelete"]) == ("ipv4", False)
        assert made.one("hcloud:index/network:Network").inputs["ipRange"] == "10.42.0.0/16"


def test_a_hetzner_server_has_its_address_firewall_network_and_data_volume(
        deployed: dict[str, Deployed]) -> None:
    made = deployed["hetzner-standby"]
    server, volume = made.one("hcloud:index/server:Server"), made.one("hcloud:index/volume:Volume")
    ids = {typ: int(made.one(f"hcloud:index/{typ}").id)
           for typ in ("primaryIp:PrimaryIp", "firewall:Firewall", "network:Network")}
    assert server.inputs["publicNets"] == [
        {"ipv4": ids["primaryIp:PrimaryIp"], "ipv4Enabled": True, "ipv6Enabled": False}]
    assert server.inputs["firewallIds"] == [ids["firewall:Firewall"]]
    assert server.inputs["networks"] == [{"networkId": ids["network:Network"]}]
    assert (server.inputs["serverType"], server.inputs["image"]) == ("cx22", "debian-12")
    assert is_secret(server.inputs["userData"])
    assert (volume.inputs["format"], volume.inputs["size"]) == ("ext4", 20)
    attachment = made.one("hcloud:index/volumeAttachment:VolumeAttachment")
    assert attachment.inputs == {"volumeId": int(volume.id), "serverId": int(server.id),
                                 "automount": True}
    data_dir = _agent_config(plain(server.inputs["userData"])).postgres.data_dir
    assert str(data_dir) == f"/mnt/HC_Volume_{volume.id}/postgresql"
    assert made.outputs["address"] == HETZNER


def test_a_hetzner_server_gets_the_operators_ssh_key_when_one_is_given() -> None:
    made = deploy_site("hetzner-standby", failover_sshPublicKey=SSH_KEY)
    key = made.one("hcloud:index/sshKey:SshKey")
    assert (key.inputs["name"], key.inputs["publicKey"]) == ("failover-hetzner", SSH_KEY)
    assert made.one("hcloud:index/server:Server").inputs["sshKeys"] == [key.id]
    # A spare has no server to put it on: `failover rebuild` makes that.
    assert not deploy_site("spare", failover_sshPublicKey=SSH_KEY).of_type(
        "hcloud:index/sshKey:SshKey")


def test_a_hetzner_server_without_an_ssh_key_setting_has_no_key(
        deployed: dict[str, Deployed]) -> None:
    made = deployed["hetzner-standby"]
    assert not made.of_type("hcloud:index/sshKey:SshKey")
    assert "sshKeys" not in made.one("hcloud:index/server:Server").inputs


def test_a_hetzner_firewall_opens_the_app_to_all_and_the_rest_to_named_addresses(
        deployed: dict[str, Deployed]) -> None:
    assert _firewall(deployed["hetzner-standby"]) == _expected_firewall(HETZNER)
    assert _firewall(deployed["spare"]) == _expected_firewall(SPARE)


def test_a_hetzner_bucket_is_made_through_hetzner_s_s3_endpoint_with_its_keys(
        deployed: dict[str, Deployed]) -> None:
    made = deployed["hetzner-standby"]
    s3 = made.one_named("hetzner-s3")
    assert json.loads(s3.inputs["endpoints"]) == [{"s3": "https://fsn1.your-objectstorage.com"}]
    assert s3.inputs["skipCredentialsValidation"] == "true"  # Hetzner has no STS
    assert is_secret(s3.inputs["secretKey"]) and is_secret(s3.inputs["accessKey"])
    assert plain(s3.inputs["accessKey"]) == HETZNER_KEYS["failover:hetznerS3AccessKey"]
    media = made.one_named("hetzner-media", "aws:s3/bucket:Bucket")
    assert media.made_by(s3)
    assert made.outputs["objects"] == {"endpoint_url": "https://fsn1.your-objectstorage.com",
                                       "bucket": "change-me-failover-media-hetzner",
                                       "region": "fsn1"}


def test_a_spare_reserves_its_address_firewall_and_network_and_makes_no_server(
        deployed: dict[str, Deployed]) -> None:
    spare = deployed["spare"]
    assert not spare.of_type("hcloud:index/server:Server")
    assert not spare.of_type("hcloud:index/volume:Volume")
    config = AgentConfig.model_validate(yaml.safe_load(spare.outputs["agent_config"]))
    assert (config.site, config.provider) == ("spare", "hetzner")
    assert spare.outputs["provision"]["admin_sources"] == sorted([ADMIN, CONTROLLER])


# -- DnsZone ------------------------------------------------------------------------------

def test_the_zone_points_its_records_at_the_primary_with_their_ttls(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    zone, record = aws.one("aws:route53/zone:Zone"), aws.one("aws:route53/record:Record")
    assert zone.inputs["name"] == "change-me.example"
    assert record.inputs == {"zoneId": aws.outputs["dns"]["route53_zone_id"],
                             "name": "app.change-me.example.", "type": "A", "ttl": 60,
                             "records": [AWS]}
    assert {k: aws.outputs["dns"][k] for k in ("zone", "low_ttl", "records")} == {
        "zone": "change-me.example.", "low_ttl": 5,
        "records": [{"name": "app", "type": "A", "ttl": 60}]}


def test_a_zone_in_a_standby_s_stack_points_at_the_primary_s_address() -> None:
    made = deploy_site("hetzner-standby", failover_dns={
        "zone": "change-me.example.", "records": [{"name": "@", "ttl": 30}],
        "primaryAddress": AWS})
    record = made.one("aws:route53/record:Record")
    assert (record.inputs["name"], record.inputs["records"]) == ("change-me.example.", [AWS])
    assert "tsig_key" not in made.outputs  # no RFC 2136 server: no key


def test_the_dns_user_may_change_that_zone_s_records_alone(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    statements = _policy(aws, "aws-zone-controller-policy")["Statement"]
    zone = f"arn:aws:route53:::hostedzone/{aws.outputs['dns']['route53_zone_id']}"
    assert statements[0]["Resource"] == zone
    assert "route53:ChangeResourceRecordSets" in statements[0]["Action"]
    assert all("Change" not in str(s["Action"]) or s["Resource"] != "*" for s in statements)


def test_the_tsig_key_is_a_random_secret_in_bind_s_format(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    assert aws.one("random:index/randomBytes:RandomBytes").inputs["length"] == 32
    assert "tsig_key" in aws.secret
    key = TsigKey(**aws.outputs["tsig_key"])
    assert TsigKey.parse(key.to_bind()) == key
    assert len(base64.b64decode(key.secret)) == 32
    assert aws.outputs["dns"]["rfc2136"] == {"server": "192.0.2.53", "port": 53,
                                             "key_name": "failover.",
                                             "algorithm": "hmac-sha256"}


# -- BackupRepo ---------------------------------------------------------------------------

def test_a_repository_at_aws_has_a_versioned_bucket_and_a_user_for_it_alone(
        deployed: dict[str, Deployed]) -> None:
    aws = deployed["aws-primary"]
    assert aws.outputs["repositories"] == {"aws": {
        "provider": "aws", "endpoint": "s3.eu-central-1.amazonaws.com", "port": 443,
        "bucket": "change-me-failover-backups-aws", "region": "eu-central-1",
        "path": "/pgbackrest", "uri_style": "host"}}
    statements = _policy(aws, "aws-backups-aws-user-policy")["Statement"]
    assert statements[0]["Resource"] == ["arn:aws:s3:::change-me-failover-backups-aws"]
    # In the stack's own region the repository uses the stack's provider.
    assert aws.one_named("aws-backups-aws", "aws:s3/bucket:Bucket").provider == ""


def test_a_repository_in_another_aws_region_has_a_provider_of_its_own() -> None:
    made = deploy_site("aws-primary", failover_backups=[
        {"name": "dublin", "provider": "aws", "region": "eu-west-1", "bucket": "b-dublin"}])
    assert made.one_named("aws-backups-dublin-aws").inputs["region"] == "eu-west-1"
    assert made.outputs["repositories"]["dublin"]["endpoint"] == "s3.eu-west-1.amazonaws.com"


def test_a_repository_at_hetzner_uses_hetzner_s_keys(deployed: dict[str, Deployed]) -> None:
    made = deployed["hetzner-standby"]
    assert made.outputs["repositories"]["hetzner"]["endpoint"] == "fsn1.your-objectstorage.com"
    assert made.outputs["repository_credentials"]["hetzner"] == {
        "access_key_id": HETZNER_KEYS["failover:hetznerS3AccessKey"],
        "secret_access_key": HETZNER_KEYS["failover:hetznerS3SecretKey"]}
    assert not made.of_type("aws:iam/user:User")  # no IAM at Hetzner
