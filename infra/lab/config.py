"""The failover configuration of a lab, written by ``lab up`` into its state dir.

With no ``--config``, every command reads this file, so the engine drives the
lab through exactly the same configuration a real deployment would have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from failover.config import CONFIG_FILE_NAME, JOURNAL_FILE_NAME
from infra.lab import etcd, stores
from infra.lab.agents import agent_dir, agent_url, spare_template
from infra.lab.agents import secret_file as agent_secret_file
from infra.lab.layout import (
    EC2_SITE,
    HCLOUD_SITE,
    PRIMARY_SITE,
    SPARE_SITE,
    STANDBY_SITE,
    VANTAGE_OCTETS,
    LabLayout,
)
from infra.lab.paths import LabPaths
from infra.lab.secrets import (
    aws_credentials_file,
    ec2_credentials_file,
    hcloud_spare_token_file,
    hcloud_token_file,
    pgpass_file,
    webhook_secret_file,
)

OBJECTIVES = {"rto_seconds": 15.0, "rpo_writes": 0}
# The records' TTL stays the layout's (5 s: what clients cache when there was
# no warning); ahead of a planned move it drops to 1 s, so the cut is quick.
LOW_TTL = 1
# The controller looks every second (the provider APIs every two) and calls a
# site down after three failed looks in a row, at a majority of vantage points.
PROBES = {"http": {"interval": 1, "timeout": 1}, "database": {"interval": 1, "timeout": 1},
          "dns": {"interval": 1, "timeout": 1}, "api": {"interval": 2, "timeout": 2}}
FAILURES = 3
API_TIMEOUT = 2
LEASE_SECONDS = 2.0


def _relative(paths: LabPaths, path: Path) -> str:
    return str(path.relative_to(paths.root))


def _api(layout: LabLayout, paths: LabPaths, site: str) -> dict[str, Any] | None:
    """How the controller watches a site's provider account (its API), if it has one."""
    if site == EC2_SITE:
        return {"kind": "ec2", "endpoint_url": layout.ec2_endpoint, "region": layout.region,
                "credentials_file": _relative(paths, ec2_credentials_file(paths)),
                "timeout": API_TIMEOUT}
    if site == HCLOUD_SITE:
        return {"kind": "hcloud", "endpoint": layout.hcloud_endpoint,
                "token_file": _relative(paths, hcloud_token_file(paths)),
                "timeout": API_TIMEOUT}
    return None


def _watch(layout: LabLayout, paths: LabPaths) -> dict[str, Any]:
    """The controller's section: where it listens, where it probes from, how it judges."""
    return {
        "listen": f"{layout.watch_address}:{layout.watch_port}",
        "vantage_points": {name: {"source_address": layout.vantage_address(name)}
                           for name in VANTAGE_OCTETS},
        "webhook_secret_file": _relative(paths, webhook_secret_file(paths)),
        # The lab measures what an emergency loses, so the controller may promote
        # a standby that had not received everything instead of refusing.
        "accept_data_loss": True,
        "probes": PROBES,
        "failures": FAILURES,
        # Below the detection time (three looks a second apart): by the time the
        # controller calls the primary gone, its lease has lapsed and it has fenced
        # itself, so an emergency promote need not wait for it.
        "lease_seconds": LEASE_SECONDS,
        "lease_renew_every": LEASE_SECONDS / 4,
        # The etcd cluster across the three sites, on which one controller per site elects
        # the leader (infra.lab.etcd says why these times).
        "cluster": {"endpoints": etcd.endpoints(layout), "name": etcd.CLUSTER_NAME,
                    "ttl": etcd.TTL, "loop_wait": etcd.LOOP_WAIT,
                    "retry_timeout": etcd.RETRY_TIMEOUT, "agent_leases": layout.agent_leases,
                    # One controller per site (`failover watch --site S`), at the site's
                    # address: a site that goes dark takes its controller with it.
                    "controllers": {site: f"{layout.address(site)}:{layout.watch_port}"
                                    for site in layout.sites}},
    }


def _site(layout: LabLayout, paths: LabPaths, site: str) -> dict[str, Any]:
    """One site's section: its addresses, database, bucket, agent and provider API."""
    pgpass = _relative(paths, pgpass_file(paths))
    return {
        "provider": site,
        "address": layout.address(site),
        "app_url": layout.app_url(site),
        "database": {"host": layout.address(site), "port": layout.postgres_port,
                     "user": "postgres", "dbname": "postgres", "passfile": pgpass},
        "objects": {"endpoint_url": layout.s3_endpoint(site), "bucket": layout.bucket,
                    "region": layout.region,
                    "credentials_file": _relative(paths, aws_credentials_file(paths)),
                    "timeout": 5},
        "compute": {"kind": "agent", "url": agent_url(layout, site),
                    "secret_file": _relative(paths, agent_secret_file(paths, site))},
        "api": _api(layout, paths, site),
    }


def _spare(layout: LabLayout, paths: LabPaths) -> dict[str, Any]:
    """The spare site: nothing runs there until `failover rebuild` makes it through the
    spare provider's (fake) Hetzner Cloud API, whose create-server boots its agent."""
    spare = {key: value for key, value in _site(layout, paths, SPARE_SITE).items()
             if key != "api"}
    return {**spare, "provision": {
        "kind": "hcloud", "endpoint": layout.hcloud_spare_endpoint,
        "token_file": _relative(paths, hcloud_spare_token_file(paths)), "timeout": 5,
        "admin_sources": [layout.watch_address]},  # where the controller reaches the agent
        "agent_config_file": _relative(paths, spare_template(paths, SPARE_SITE)),
        "agent_config_path": str(agent_dir(paths, SPARE_SITE) / "agent.yaml"),
        "agent_secret_path": str(agent_secret_file(paths, SPARE_SITE)),
        # The fake boots the agent at once: no packages to install, as on a real host.
        "boot_timeout": 60}


def lab_config(layout: LabLayout, paths: LabPaths) -> dict[str, Any]:
    """The configuration of the lab as YAML-ready data (paths relative to the state dir)."""
    secrets = paths.secrets.relative_to(paths.root)
    credentials = _relative(paths, aws_credentials_file(paths))
    sites = {site: _site(layout, paths, site) for site in (PRIMARY_SITE, STANDBY_SITE)}
    return {
        "sites": sites,
        "dns_providers": {
            "bind9": {"kind": "rfc2136", "zone": layout.zone, "server": layout.dns_address,
                      "port": layout.dns_port, "tsig_key_file": str(secrets / "tsig.key")},
            "route53": {"kind": "route53", "zone": layout.zone,
                        "endpoint_url": layout.route53_endpoint,
                        "region": layout.region, "credentials_file": credentials,
                        # On loopback an answer takes milliseconds; a provider that
                        # went dark in a drill should cost seconds, not a minute.
                        "timeout": 3},
        },
        "dns": {"zone": layout.zone, "low_ttl": LOW_TTL,
                "records": [{"name": layout.app_label, "type": "A", "ttl": layout.ttl}]},
        "objectives": OBJECTIVES,
        "backups": {"stanza": stores.STANZA, "repositories": {
            name: repo.model_dump(mode="json") | {
                "credentials_file": _relative(paths, repo.credentials_file)}
            for name, repo in stores.repositories(layout, paths).items()}},
        "watch": _watch(layout, paths),
        "spares": {SPARE_SITE: _spare(layout, paths)},
        "journal": JOURNAL_FILE_NAME,
    }


def write_lab_config(layout: LabLayout, paths: LabPaths) -> None:
    """Write ``failover.yaml`` into the lab's state dir (it names secret files, holds none)."""
    text = "# written by `failover lab up`; the engine reads it when no --config is given\n"
    text += yaml.safe_dump(lab_config(layout, paths), sort_keys=False)
    (paths.root / CONFIG_FILE_NAME).write_text(text)
