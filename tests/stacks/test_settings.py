"""A stack's settings: read in one module, from the checked-in stack files, all problems at
once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from failover.exceptions import ConfigError
from infra.components import program
from infra.components.settings import SiteSettings, load_settings
from tests.stacks.mocked import (
    ADDRESSES,
    CONTROLLER,
    PROJECT_DIR,
    SITES,
    deploy,
    site_config,
    stack_config,
    use_config,
)

COMPONENTS = Path(__file__).resolve().parents[2] / "infra" / "components"


def settings_of(stack: str, config: dict[str, Any]) -> SiteSettings:
    """The settings ``load_settings`` reads from ``config``, as stack ``stack``'s program."""
    use_config(config)
    read: list[SiteSettings] = []

    def program() -> dict[str, Any]:
        read.append(load_settings())
        return {}

    deploy(program, stack=stack)
    return read[0]


def problems_of(stack: str, config: dict[str, Any]) -> list[str]:
    """The problems ``load_settings`` names for ``config``, one per line."""
    with pytest.raises(ConfigError) as refused:
        settings_of(stack, config)
    message = str(refused.value)
    assert message.startswith(f"stack {stack}: ")
    return message.removeprefix(f"stack {stack}: ").split("; ")


def test_the_project_has_one_stack_per_site() -> None:
    assert sorted(p.name for p in PROJECT_DIR.glob("Pulumi.*.yaml")) == [
        f"Pulumi.{stack}.yaml" for stack in sorted(SITES)]
    assert (PROJECT_DIR / "Pulumi.yaml").read_text().count("name: failover") == 1


@pytest.mark.parametrize("stack", sorted(SITES))
def test_each_checked_in_stack_loads(stack: str) -> None:
    settings = settings_of(stack, site_config(stack))
    assert settings.site == SITES[stack]
    assert settings.requirement == "failover==0.1.0"
    assert dict(settings.access.peers) == {
        SITES[s]: a for s, a in ADDRESSES.items() if s != stack}
    assert settings.backups and settings.backups[0].provider == settings.provider


def test_a_stack_s_own_file_needs_only_the_secrets_set_beside_it() -> None:
    # As checked in (no peers yet), the AWS site loads; Hetzner's wants its S3 keys.
    assert settings_of("aws-primary", stack_config("aws-primary")).access.peers == {}
    assert problems_of("hetzner-standby", stack_config("hetzner-standby")) == [
        "hetznerS3AccessKey, hetznerS3SecretKey: Hetzner's object storage needs its S3 keys "
        "(made in the Hetzner console), as secrets"]


def test_every_problem_is_named_at_once() -> None:
    config = site_config(
        "hetzner-standby", failover_role="leader", failover_bucket="Not_A_Bucket",
        failover_access={"peers": {"aws": "203.0.113.0/24", "hetzner": "203.0.113.20"},
                         "controller": ["controller.example"], "admin": ["0.0.0.0/0"]},
        failover_dns={"zone": "example.com", "records": [{"name": "app.", "ttl": 0}]},
        failover_backups=[{"name": "b", "provider": "aws", "region": "eu-central-1",
                           "bucket": "b", "size": 1}])
    assert problems_of("hetzner-standby", config) == [
        "role: 'leader' must be one of primary, standby, spare",
        "backups.0: got an unexpected keyword argument 'size'",
        "bucket: 'Not_A_Bucket' is not a valid bucket name",
        "access.peers.aws: '203.0.113.0/24' must be one IP address (the database port opens "
        "to it alone)",
        "access.peers.hetzner: a site is not its own peer",
        "access.controller.0: 'controller.example' must be one IP address",
        "access.admin.0: 0.0.0.0/0 is the whole Internet: name the operators' own networks",
        "dns.zone: 'example.com' must be absolute (end with a dot)",
        "dns.records.0.name: 'app.' must be relative to the zone, or @",
        "dns.records.0.ttl: 0 is not between 1 and 86400",
    ]


def test_a_standby_s_zone_must_say_where_the_primary_is() -> None:
    config = site_config("hetzner-standby", failover_dns={
        "zone": "example.com.", "records": [{"name": "app"}]})
    assert problems_of("hetzner-standby", config) == [
        "dns.primaryAddress: the records point at the primary, which is another stack's "
        "site: give its address"]


def test_a_spare_at_aws_is_refused() -> None:
    config = site_config("aws-primary", failover_role="spare", failover_dns=None)
    assert problems_of("aws-primary", config) == [
        "role: a spare is made by `failover rebuild` through Hetzner Cloud's API, so a "
        "spare at aws is not supported"]


def test_an_aws_site_needs_its_region_and_the_app_s_version() -> None:
    config = {k: v for k, v in site_config("aws-primary").items() if k != "aws:region"}
    config["failover:requirement"] = "--index-url=http://evil.example"
    assert problems_of("aws-primary", config) == [
        "aws:region: an AWS site needs its region",
        "requirement: the app's version as pip installs it is required, e.g. "
        "failover==0.1.0"]


def test_hetzner_buckets_only_where_hetzner_has_object_storage() -> None:
    config = site_config("hetzner-standby", failover_hetzner={"location": "ash"},
                         failover_backups=[{"name": "b", "provider": "hetzner",
                                            "region": "hil", "bucket": "b-hil"}])
    assert problems_of("hetzner-standby", config) == [
        "hetzner.location: 'ash' has no Hetzner object storage for the site's bucket (it is "
        "at fsn1, nbg1, hel1)",
        "backups.0.region: 'hil' has no Hetzner object storage (it is at fsn1, nbg1, hel1)"]


@pytest.mark.parametrize(("access", "problem"), [
    ({"peers": ["203.0.113.10"]}, "access.peers: expected a mapping of the other sites' "
                                  "names to their addresses"),
    ({"controller": "198.51.100.7"}, "access.controller: expected a list of addresses"),
    ({"admin": {"office": "192.0.2.0/24"}}, "access.admin: expected a list of addresses"),
])
def test_access_of_the_wrong_shape_is_a_problem_line(access: dict[str, Any],
                                                     problem: str) -> None:
    assert problems_of("aws-primary", site_config("aws-primary", failover_access=access)) == [
        problem]


def test_an_ssh_key_setting_must_be_a_public_key_line() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockMockMock op@desk"
    assert settings_of("spare", site_config("spare", failover_sshPublicKey=f" {key}\n")
                       ).ssh_public_key == key
    assert problems_of("spare", site_config(
        "spare", failover_sshPublicKey="-----BEGIN OPENSSH PRIVATE KEY-----")) == [
        "sshPublicKey: expected one OpenSSH public key line (ssh-ed25519 AAAA... you@host), "
        "as in ~/.ssh/id_ed25519.pub"]
    assert settings_of("spare", site_config("spare")).ssh_public_key is None


def test_the_program_says_wrong_settings_as_pulumis_error_without_a_traceback() -> None:
    # A RunError's message is what Pulumi's Python host prints as the program's error; any
    # other exception it prints as a traceback under "Program failed with an unhandled
    # exception:".
    use_config(site_config("aws-primary", failover_role="leader", failover_bucket="B"))
    with pytest.raises(pulumi.RunError) as refused:
        deploy(lambda: program.main() or {}, stack="aws-primary")
    assert str(refused.value) == (
        "stack aws-primary: role: 'leader' must be one of primary, standby, spare; "
        "bucket: 'B' is not a valid bucket name")
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_the_program_makes_the_site_from_good_settings() -> None:
    use_config(site_config("spare"))
    made = deploy(lambda: program.main() or {}, stack="spare")
    assert made.one("hcloud:index/primaryIp:PrimaryIp").inputs["name"] == "failover-spare"


def test_the_controller_s_address_is_what_the_stacks_let_in() -> None:
    settings = settings_of("spare", site_config("spare"))
    assert settings.access.controller == (CONTROLLER,)


def test_only_the_settings_module_reads_pulumi_config() -> None:
    readers = sorted(path.name for path in COMPONENTS.glob("*.py")
                     if re.search(r"\bConfig\(", path.read_text()))
    assert readers == ["settings.py"]
