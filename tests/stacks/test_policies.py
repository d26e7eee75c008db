"""The stacks' policies: each holds for the checked-in stacks, and catches a stack broken on
purpose (the same function judges both)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from infra.components import aws_site, program
from infra.components.agent import AgentArgs, SiteAgent
from infra.components.rules import WORLD, Ingress, ingress_rules
from infra.components.settings import Ports, load_settings
from tests.stacks.mocked import (
    ADDRESSES,
    CONTROLLER,
    SITES,
    Deployed,
    all_sites,
    deploy,
    deploy_site,
    site_config,
    use_config,
)
from tests.stacks.policies import (
    app_versions,
    backups_only_at_primary,
    database_open_to_world,
    mixed_app_versions,
    plain_secrets,
    replication_beyond_sites,
    unreachable_peers,
    unversioned_buckets,
    user_data_readers,
)

STRANGER = "198.51.100.99"


@pytest.fixture(scope="module")
def sites() -> list[Deployed]:
    """The three checked-in stacks, deployed under mocks."""
    return list(all_sites())


def _others(deployed: Deployed) -> list[str]:
    return [address for stack, address in ADDRESSES.items() if stack != deployed.stack]


def _with(stack: str, add: Any) -> Deployed:
    """``stack``'s program with one more thing made (``add`` gets the outputs)."""
    use_config(site_config(stack))

    def broken() -> dict[str, Any]:
        outputs = program.site_stack(load_settings())
        add(outputs)
        return outputs

    return deploy(broken, stack=stack)


# -- No database port open to the world -------------------------------------------------

def test_no_stack_opens_a_database_port_to_the_world(sites: list[Deployed]) -> None:
    assert [problem for d in sites for problem in database_open_to_world(d)] == []


@pytest.fixture
def a_rule_too_many(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The program's firewall rules with PostgreSQL opened to everyone besides."""
    rules = ingress_rules

    def more(ports: Ports, access: Any) -> list[Ingress]:
        return [*rules(ports, access), Ingress(ports.database, WORLD, "debugging")]

    monkeypatch.setattr(program, "ingress_rules", more)
    yield


@pytest.mark.parametrize("stack", ["aws-primary", "hetzner-standby"])
@pytest.mark.parametrize("port", [5432, 6543])
@pytest.mark.usefixtures("a_rule_too_many")
def test_a_database_port_open_to_the_world_is_caught(stack: str, port: int) -> None:
    broken = deploy_site(stack, failover_ports={"database": port})
    assert len(database_open_to_world(broken)) == 2  # IPv4 and IPv6
    assert all(f"port {port} is open to" in p for p in database_open_to_world(broken))


def test_an_older_ec2_security_group_rule_open_to_the_world_is_caught() -> None:
    broken = _with("aws-primary", lambda outputs: aws.ec2.SecurityGroupRule(
        "debugging", type="ingress", security_group_id="sg-0mock", protocol="tcp",
        from_port=5000, to_port=6000, cidr_blocks=["0.0.0.0/0"]))
    assert database_open_to_world(broken) == ["debugging: port 5432 is open to 0.0.0.0/0"]


# -- Replication only between the sites ---------------------------------------------------

def test_the_database_port_is_open_to_the_other_sites_and_the_controller_only(
        sites: list[Deployed]) -> None:
    for deployed in sites:
        assert replication_beyond_sites(deployed, _others(deployed), [CONTROLLER]) == []
        assert unreachable_peers(deployed, _others(deployed)) == []


def test_a_database_port_open_to_an_address_that_is_no_site_is_caught() -> None:
    peers = {SITES[s]: a for s, a in ADDRESSES.items() if s != "hetzner-standby"}
    broken = deploy_site("hetzner-standby", failover_access={
        "peers": {**peers, "old-office": STRANGER}, "controller": [CONTROLLER]})
    assert replication_beyond_sites(broken, _others(broken), [CONTROLLER]) == [
        f"hetzner-firewall: port 5432 is open to {STRANGER}/32, which is no site's address"]


# -- Buckets versioned --------------------------------------------------------------------

def test_every_bucket_is_versioned(sites: list[Deployed]) -> None:
    assert sum(len(d.of_type("aws:s3/bucket:Bucket")) for d in sites) == 6  # media, backups
    assert [problem for d in sites for problem in unversioned_buckets(d.made)] == []


def test_a_bucket_without_versioning_is_caught() -> None:
    broken = _with("aws-primary", lambda outputs: aws.s3.Bucket(
        "scratch", bucket="change-me-failover-scratch"))
    assert unversioned_buckets(broken.made) == [
        "bucket change-me-failover-scratch (scratch) is not versioned"]


# -- Secrets marked secret ----------------------------------------------------------------

def test_every_secret_is_a_pulumi_secret(sites: list[Deployed]) -> None:
    assert {name for d in sites for name in d.secret} >= {
        "agent_secret", "objects_credentials", "controller_credentials",
        "repository_credentials", "dns_credentials", "tsig_key"}
    assert [problem for d in sites for problem in plain_secrets(d)] == []


def _unsecret_agent_secret(outputs: dict[str, Any]) -> None:
    outputs["agent_secret"] = pulumi.Output.unsecret(outputs["agent_secret"])


def _secret_in_a_plain_output(outputs: dict[str, Any]) -> None:
    outputs["motd"] = pulumi.Output.unsecret(outputs["agent_secret"]).apply(
        lambda secret: f"the agent's secret is {secret}")


def _secrets_in_a_plain_mapping(outputs: dict[str, Any]) -> None:
    # What the stacks once exported: a mapping whose values alone are secret, which
    # `pulumi stack output` prints with its keys and the Automation API calls not secret.
    outputs["repository_credentials"] = {"aws": outputs["objects_credentials"]}


@pytest.mark.parametrize(("change", "problem"), [
    (_unsecret_agent_secret, "output agent_secret is not a Pulumi secret"),
    (_secrets_in_a_plain_mapping, "output repository_credentials is not a Pulumi secret"),
    (_secret_in_a_plain_output, "output motd carries a secret's value in the clear"),
])
def test_a_secret_in_the_clear_is_caught(change: Any, problem: str) -> None:
    assert problem in plain_secrets(_with("aws-primary", change))


def test_a_user_data_in_the_clear_is_caught() -> None:
    def leaky() -> dict[str, Any]:
        agent = SiteAgent("leaky-agent", AgentArgs(
            site="aws", provider="aws", requirement="failover==0.1.0", ports=Ports(),
            objects_endpoint="https://s3.eu-central-1.amazonaws.com", bucket="media",
            region="eu-central-1"))
        aws.ec2.Instance("leaky", ami="ami-0mockdebian12", instance_type="t3.small",
                         user_data=pulumi.Output.unsecret(agent.user_data))
        return {"agent_secret": agent.secret}

    problems = plain_secrets(deploy(leaky, stack="aws-primary"))
    assert problems[0] == "leaky: its user-data (with the agent's secret) is not a Pulumi secret"
    assert "leaky.userData carries a secret's value in the clear" in problems


# -- No API key reads a host's user-data ---------------------------------------------------

def test_no_api_user_may_read_a_host_s_user_data(sites: list[Deployed]) -> None:
    assert sum(len(d.of_type("aws:iam/userPolicy:UserPolicy")) for d in sites) == 4
    assert [problem for d in sites for problem in user_data_readers(d.made)] == []


def test_a_controller_that_may_read_user_data_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The controller's policy as it was: every Describe, DescribeInstanceAttribute among them.
    monkeypatch.setattr(aws_site, "CONTROLLER_POLICY", json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}))
    assert user_data_readers(deploy_site("aws-primary").made) == [
        "aws-controller-policy: allows ec2:DescribeInstanceAttribute, which hands out a "
        "host's user-data (the agent's secret)"]


# -- The same app version on every site ---------------------------------------------------

def test_every_site_runs_the_same_app_version(sites: list[Deployed]) -> None:
    assert [app_versions(d) for d in sites] == [{"failover==0.1.0"}] * 3
    assert mixed_app_versions(sites) == []


def test_a_site_on_another_app_version_is_caught() -> None:
    broken = list(all_sites(hetzner_standby={"failover_requirement": "failover==0.0.9"}))
    assert "site hetzner runs failover==0.0.9; the sites run failover==0.0.9, " \
           "failover==0.1.0" in mixed_app_versions(broken)


# -- Backups never only at the primary's provider -----------------------------------------

def test_backups_are_at_a_provider_other_than_each_site_s(sites: list[Deployed]) -> None:
    assert backups_only_at_primary(sites) == []


def test_backups_only_at_the_primary_s_provider_are_caught() -> None:
    broken = list(all_sites(hetzner_standby={"failover_backups": []},
                            spare={"failover_backups": []}))
    assert backups_only_at_primary(broken) == [
        "site aws (aws): every backup repository is at aws, or there is none"]
