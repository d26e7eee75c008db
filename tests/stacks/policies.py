"""The stacks' policies as plain functions over what the mocks saw.

Each returns the problems it finds, one line each (empty: the policy holds),
so that one function judges the real stacks and the broken ones alike, as a
Pulumi policy pack would at preview time.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from failover.provision.network import cidr
from failover.stacks.outputs import SECRET_OUTPUTS
from tests.stacks.mocked import Deployed, Made, is_secret, plain

SG_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_OLD_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"  # ingress or egress, in one
SG = "aws:ec2/securityGroup:SecurityGroup"
HCLOUD_FIREWALL = "hcloud:index/firewall:Firewall"
BUCKET = "aws:s3/bucket:Bucket"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
HOSTS = ("aws:ec2/instance:Instance", "hcloud:index/server:Server")
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
USER_DATA_ACTION = "ec2:DescribeInstanceAttribute"  # what hands out a host's user-data


@dataclass(frozen=True)
class Opening:
    """Ports ``low``..``high`` of a host opened to ``source`` by one rule."""

    resource: str
    low: int
    high: int
    source: str

    def covers(self, port: int) -> bool:
        """Whether the rule lets ``port`` in."""
        return self.low <= port <= self.high


def _get(mapping: dict[str, Any], name: str) -> Any:
    """A nested argument by its camelCase or snake_case name (the mocks give either)."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return mapping.get(name, mapping.get(snake))


def _ports(text: Any) -> tuple[int, int]:
    """Hetzner's port field: "5432", "5000-6000", "any" or absent (every port)."""
    if text in (None, "", "any"):
        return 0, 65535
    low, _, high = str(text).partition("-")
    return int(low), int(high or low)


def _range(rule: Mapping[str, Any], protocol: str) -> tuple[int, int]:
    """An AWS rule's ports: every port for protocol -1 (or "all"), else from..to."""
    if str(_get(rule, protocol)).lower() in ("-1", "all"):
        return 0, 65535
    low = int(_get(rule, "fromPort") or 0)
    return low, int(_get(rule, "toPort") or low)


def openings(made: Iterable[Made]) -> list[Opening]:
    """Every inbound opening of every security group rule (the VPC resource, the older
    EC2 one, or inline in a group) and Hetzner firewall rule."""
    found = []
    for resource in made:
        inputs = plain(resource.inputs)
        if resource.type == SG_RULE:
            low, high = _range(inputs, "ipProtocol")
            for source in (inputs.get("cidrIpv4"), inputs.get("cidrIpv6")):
                if source:
                    found.append(Opening(resource.name, low, high, source))
        elif resource.type == SG_OLD_RULE and inputs.get("type") == "ingress":
            low, high = _range(inputs, "protocol")
            found += [Opening(resource.name, low, high, s) for s in
                      (inputs.get("cidrBlocks") or []) + (inputs.get("ipv6CidrBlocks") or [])]
        elif resource.type == SG:  # rules written inline in the group, if anyone does
            for rule in inputs.get("ingress") or []:
                low, high = _range(rule, "protocol")
                sources = (_get(rule, "cidrBlocks") or []) + (_get(rule, "ipv6CidrBlocks") or [])
                found += [Opening(resource.name, low, high, s) for s in sources]
        elif resource.type == HCLOUD_FIREWALL:
            for rule in inputs.get("rules") or []:
                if rule.get("direction") == "in":
                    low, high = _ports(rule.get("port"))
                    found += [Opening(resource.name, low, high, s)
                              for s in _get(rule, "sourceIps") or []]
    return found


def database_port(deployed: Deployed) -> int:
    """The port the stack's PostgreSQL listens on, as its ``database`` output says."""
    return int(deployed.outputs["database"]["port"])


def database_open_to_world(deployed: Deployed) -> list[str]:
    """Rules that let anyone at all reach the stack's database port."""
    port = database_port(deployed)
    return [f"{o.resource}: port {port} is open to {o.source}" for o in openings(deployed.made)
            if o.covers(port) and ipaddress.ip_network(o.source, strict=False).prefixlen == 0]


def replication_beyond_sites(deployed: Deployed, sites: Sequence[str],
                             controller: Sequence[str]) -> list[str]:
    """Database-port sources that are neither another site's address nor the controller's."""
    port = database_port(deployed)
    allowed = {cidr(address) for address in (*sites, *controller)}
    return [f"{o.resource}: port {port} is open to {o.source}, which is no site's address"
            for o in openings(deployed.made) if o.covers(port) and o.source not in allowed]


def unreachable_peers(deployed: Deployed, peers: Sequence[str]) -> list[str]:
    """Peers that cannot reach the database port: replication between them would fail."""
    port = database_port(deployed)
    reach = {o.source for o in openings(deployed.made) if o.covers(port)}
    return [f"site {p} cannot reach port {port}" for p in peers if cidr(p) not in reach]


def unversioned_buckets(made: Sequence[Made]) -> list[str]:
    """Buckets without versioning switched on."""
    versioned = {plain(v.inputs["bucket"]) for v in made if v.type == VERSIONING
                 and (_get(plain(v.inputs), "versioningConfiguration") or {}).get("status")
                 == "Enabled"}
    return [f"bucket {plain(b.inputs.get('bucket'))} ({b.name}) is not versioned"
            for b in made if b.type == BUCKET and b.id not in versioned]


def _names(action: str, patterns: Any) -> bool:
    """Whether an IAM statement's Action (a pattern or a list of them) covers ``action``."""
    listed = [patterns] if isinstance(patterns, str) else list(patterns or [])
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in listed)


def _may(document: Mapping[str, Any], action: str) -> bool:
    """Whether an IAM policy document allows ``action`` and no statement of it denies it."""
    statements = document.get("Statement") or []
    effects = {s.get("Effect") for s in statements if _names(action, s.get("Action"))}
    return "Allow" in effects and "Deny" not in effects


def user_data_readers(made: Iterable[Made]) -> list[str]:
    """IAM users that may read a host's user-data, where the agent's secret is."""
    return [f"{policy.name}: allows {USER_DATA_ACTION}, which hands out a host's user-data "
            "(the agent's secret)" for policy in made if policy.type == USER_POLICY
            and _may(json.loads(plain(policy.inputs["policy"])), USER_DATA_ACTION)]


def secret_strings(outputs: Mapping[str, Any], names: Iterable[str] = SECRET_OUTPUTS
                   ) -> set[str]:
    """The strings inside the named outputs, those long enough to look for elsewhere."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, str) and len(value) >= 16:
            found.add(value)

    for name in set(names) & outputs.keys():
        walk(outputs[name])
    return found


def plain_secrets(deployed: Deployed) -> list[str]:
    """Secrets that are not Pulumi secrets: a secret output or a user-data in the clear, or
    a secret's value inside anything that is not secret."""
    problems = [f"output {name} is not a Pulumi secret"
                for name in sorted(SECRET_OUTPUTS & deployed.outputs.keys() - deployed.secret)]
    problems += [f"{host.name}: its user-data (with the agent's secret) is not a Pulumi secret"
                 for host in deployed.made if host.type in HOSTS
                 and "userData" in host.inputs and not is_secret(host.inputs["userData"])]
    values = secret_strings(deployed.outputs, deployed.secret & SECRET_OUTPUTS)
    for name, value in deployed.outputs.items():
        if name not in deployed.secret and any(s in repr(value) for s in values):
            problems.append(f"output {name} carries a secret's value in the clear")
    for resource in deployed.made:
        for key, value in resource.inputs.items():
            if not is_secret(value) and any(s in repr(value) for s in values):
                problems.append(f"{resource.name}.{key} carries a secret's value in the clear")
    return problems


def pip_requirement(user_data: str) -> str:
    """What a cloud-init user-data's ``pip install`` installs."""
    for command in yaml.safe_load(user_data)["runcmd"]:
        if isinstance(command, list) and "install" in command and "--" in command:
            return str(command[command.index("--") + 1])
    raise AssertionError("the user-data installs nothing with pip")


def app_versions(deployed: Deployed) -> set[str]:
    """The app versions a site's stack names: its output, and what its host installs."""
    versions = {str(deployed.outputs["app_version"])}
    for host in deployed.made:
        if host.type in HOSTS:
            versions.add(pip_requirement(plain(host.inputs["userData"])))
    return versions


def mixed_app_versions(deployments: Iterable[Deployed]) -> list[str]:
    """More than one app version among the sites."""
    by_site = {d.outputs["site"]: app_versions(d) for d in deployments}
    every = set().union(*by_site.values())
    if len(every) <= 1:
        return []
    return [f"site {site} runs {', '.join(sorted(versions))}; the sites run "
            f"{', '.join(sorted(every))}" for site, versions in by_site.items()]


def backups_only_at_primary(deployments: Sequence[Deployed]) -> list[str]:
    """Sites that could be primary while every backup repository is at their own provider."""
    repositories = [repo for d in deployments
                    for repo in (d.outputs.get("repositories") or {}).values()]
    providers = {repo["provider"] for repo in repositories}
    return [f"site {d.outputs['site']} ({d.outputs['provider']}): every backup repository "
            f"is at {d.outputs['provider']}, or there is none" for d in deployments
            if d.outputs["role"] != "spare" and not providers - {d.outputs["provider"]}]
