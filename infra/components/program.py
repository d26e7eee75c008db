"""One site's stack, from its settings: the components, and the outputs they export.

``stacks/__main__.py`` runs ``main``, which exports what ``site_stack`` returns.
The outputs are a contract, written down as ``failover.stacks.outputs.StackOutputs``,
from which ``failover config from-stacks`` builds ``failover.yaml``; every secret
among them (``SECRET_OUTPUTS`` there) is a Pulumi secret as a whole: `pulumi stack
output` shows a mapping that merely holds secrets with its keys in the clear.
"""

from __future__ import annotations

from typing import Any

import pulumi

from failover.exceptions import FailoverError
from infra.components.agent import APP_DATABASE, AgentArgs
from infra.components.aws_site import AwsSite, AwsSiteArgs
from infra.components.backup_repo import BackupRepo, BackupRepoArgs
from infra.components.dns_zone import DnsZone, DnsZoneArgs
from infra.components.hetzner_site import HetznerSite, HetznerSiteArgs
from infra.components.rules import ingress_rules
from infra.components.settings import KeyPair, SiteSettings, load_settings
from infra.components.storage import keys_output, s3_url

HCLOUD_API = "https://api.hetzner.cloud/v1"
POSTGRES_USER = POSTGRES_DB = "postgres"


def site_stack(settings: SiteSettings) -> dict[str, Any]:
    """Make a site's resources; returns the stack's outputs by name."""
    site: AwsSite | HetznerSite
    if settings.provider == "aws":
        site, region, keys, extra = _aws_site(settings)
    else:
        site, region, keys, extra = _hetzner_site(settings)
    ports = settings.ports
    outputs: dict[str, Any] = {
        "site": settings.site, "provider": settings.provider, "role": settings.role,
        "address": site.address,
        "app_url": site.address.apply(lambda a: f"http://{a}:{ports.app}"),
        "agent_url": site.address.apply(lambda a: f"http://{a}:{ports.agent}"),
        "app_version": settings.requirement,
        "database": site.address.apply(lambda a: {
            "host": a, "port": ports.database, "user": POSTGRES_USER, "dbname": POSTGRES_DB,
            "app_dbname": APP_DATABASE}),
        "objects": {"endpoint_url": s3_url(settings.provider, region),
                    "bucket": site.media.name, "region": region},
        "objects_credentials": keys_output(keys),
        "agent_secret": site.agent.secret,
        **extra,
    }
    if settings.backups:
        repos = BackupRepo(f"{settings.site}-backups", BackupRepoArgs(
            settings.backups, settings.hetzner_keys,
            aws_region=settings.aws.region if settings.aws else None))
        outputs["repositories"] = repos.repositories
        outputs["repository_credentials"] = repos.credentials_output()
    if settings.zone is not None:
        zone = settings.zone
        address: pulumi.Input[str] = site.address
        if settings.role != "primary":
            assert zone.primary_address is not None  # load_settings refuses a zone without it
            address = zone.primary_address
        dns = DnsZone(f"{settings.site}-zone", DnsZoneArgs(zone, address))
        outputs["dns"] = dns.dns
        outputs["dns_credentials"] = keys_output(dns.dns_user.keys)
        if dns.tsig_key is not None:
            outputs["tsig_key"] = dns.tsig_key
    return outputs


def _agent(settings: SiteSettings, region: str) -> AgentArgs:
    return AgentArgs(site=settings.site, provider=settings.provider,
                     requirement=settings.requirement, ports=settings.ports,
                     objects_endpoint=s3_url(settings.provider, region),
                     bucket=settings.bucket, region=region)


def _aws_site(settings: SiteSettings) -> tuple[AwsSite, str, KeyPair, dict[str, Any]]:
    """The AWS site; the controller watches EC2 with its own read-only key."""
    assert settings.aws is not None  # load_settings made it for an AWS site
    region = settings.aws.region
    site = AwsSite(settings.site, AwsSiteArgs(
        site=settings.site, host=settings.aws, bucket=settings.bucket,
        rules=ingress_rules(settings.ports, settings.access),
        agent=_agent(settings, region), ssh_public_key=settings.ssh_public_key))
    extra = {"api": {"kind": "ec2", "region": region},
             "controller_credentials": keys_output(site.controller.keys)}
    return site, region, site.storage.keys, extra


def _hetzner_site(settings: SiteSettings) -> tuple[HetznerSite, str, KeyPair, dict[str, Any]]:
    """The Hetzner site; a spare also says how `failover rebuild` makes its host."""
    assert settings.hetzner is not None and settings.hetzner_keys is not None  # checked
    host = settings.hetzner
    site = HetznerSite(settings.site, HetznerSiteArgs(
        site=settings.site, role=settings.role, host=host, bucket=settings.bucket,
        keys=settings.hetzner_keys, rules=ingress_rules(settings.ports, settings.access),
        agent=_agent(settings, host.location), ssh_public_key=settings.ssh_public_key))
    extra: dict[str, Any] = {"api": {"kind": "hcloud", "endpoint": HCLOUD_API}}
    if settings.role == "spare":
        access = settings.access
        extra["provision"] = {
            "kind": "hcloud", "location": host.location, "server_type": host.server_type,
            "image": host.image, "network_ip_range": host.network_ip_range,
            "admin_sources": sorted({*access.controller, *access.admin})}
        extra["agent_config"] = site.agent.config_text
    return site, host.location, settings.hetzner_keys, extra


def export(outputs: dict[str, Any]) -> None:
    """Export a stack's outputs."""
    for name, value in outputs.items():
        pulumi.export(name, value)


def main() -> None:
    """The program of the current stack (``stacks/__main__.py``): its settings, its site,
    its outputs; wrong settings are Pulumi's one error, naming every problem."""
    try:
        settings = load_settings()
    except FailoverError as exc:
        # Pulumi's Python host prints a RunError's message as the program's error; anything
        # else it prints as "Program failed with an unhandled exception:" and a traceback,
        # whose first line is all `failover stack` would show.
        raise pulumi.RunError(str(exc)) from None
    export(site_stack(settings))
