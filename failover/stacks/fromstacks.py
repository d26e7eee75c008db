"""``failover.yaml`` from the stacks' outputs: what ``failover config from-stacks`` builds.

Each stack's outputs are checked against their contract
(``failover.stacks.outputs``), put together into one configuration, and that
configuration is checked by the very models every ``failover.yaml`` is
(``failover.config``) before anything is written. Secrets go to 0600 files in
a 0700 directory, and the configuration names the files, as the lab's does:
the agents' secrets, AWS shared-credentials files for buckets, repositories,
EC2 and Route 53, and the TSIG key in BIND's format. Each file is replaced
whole (a reader sees the old one or the new one), and a file already there
only with ``force``: it may hold edits, or another deployment's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from failover.config import parse_config
from failover.dns.tsig import TsigKey
from failover.exceptions import ConfigError, UsageError
from failover.secretfiles import check_trusted_dir, replace_file
from failover.stacks.outputs import KeysOutput, StackOutputs, parse_outputs

CONFIG_MODE = 0o644
HEADER = "# written by `failover config from-stacks` from the Pulumi stacks' outputs\n"


@dataclass
class SecretFiles:
    """The secret files a configuration names: where each goes, and what it holds."""

    directory: Path  # absolute
    # The configuration file's folder: files under it are named relative to it (so the
    # two can move together). None: the configuration is printed, and names them whole.
    base: Path | None
    contents: dict[Path, str] = field(default_factory=dict)

    def add(self, name: str, text: str) -> str:
        """Keep ``text`` for the file ``name``; returns the path the configuration names."""
        path = self.directory / name
        self.contents[path] = text
        if self.base is not None and path.is_relative_to(self.base):
            return str(path.relative_to(self.base))
        return str(path)

    def keys(self, name: str, keys: KeysOutput) -> str:
        """An AWS shared-credentials file of one key pair."""
        return self.add(name, "[default]\n"
                              f"aws_access_key_id = {keys.access_key_id}\n"
                              f"aws_secret_access_key = {keys.secret_access_key}\n")


@dataclass(frozen=True)
class Sources:
    """What the stacks cannot say: files of the operator's that the configuration names."""

    hcloud_token_file: Path | None = None  # the Hetzner Cloud project's API token
    passfile: Path | None = None  # libpq password file for every site's PostgreSQL


def build_config(outputs: Mapping[str, Any], files: SecretFiles,
                 sources: Sources = Sources()) -> dict[str, Any]:
    """The configuration as YAML-ready data; the secrets it names are left in ``files``."""
    if not outputs:
        raise UsageError("no stack outputs to build the configuration from")
    stacks = {name: parse_outputs(name, values) for name, values in outputs.items()}
    sites: dict[str, Any] = {}
    spares: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for name, out in stacks.items():
        if out.site in seen:
            raise ConfigError(f"stack {name}: output site: {out.site!r} is also the site of "
                              f"stack {seen[out.site]}")
        seen[out.site] = name
        entry = _site(out, files, sources)
        if out.role == "spare":
            spares[out.site] = {**entry, **_spare(name, out, files, sources)}
        else:
            sites[out.site] = entry
    config: dict[str, Any] = {"sites": sites, **_dns(stacks, files)}
    repositories = _repositories(stacks, files)
    if repositories:
        config["backups"] = {"repositories": repositories}
    if spares:
        config["spares"] = spares
    return config


def _site(out: StackOutputs, files: SecretFiles, sources: Sources) -> dict[str, Any]:
    """A site's section: addresses, database, bucket, agent, provider API."""
    database = out.database.model_dump()
    if sources.passfile is not None:
        database["passfile"] = str(sources.passfile)
    entry: dict[str, Any] = {
        "provider": out.provider, "address": str(out.address), "app_url": out.app_url,
        "database": database,
        "objects": {**out.objects.model_dump(),
                    "credentials_file": files.keys(f"{out.site}-objects.credentials",
                                                   out.objects_credentials)},
        "compute": {"kind": "agent", "url": out.agent_url,
                    "secret_file": files.add(f"{out.site}-agent.secret",
                                             out.agent_secret + "\n")},
    }
    if out.api.kind == "ec2" and out.controller_credentials is not None:
        entry["api"] = {"kind": "ec2", "region": out.api.region, "credentials_file":
                        files.keys(f"{out.site}-controller.credentials",
                                   out.controller_credentials)}
    elif out.api.kind == "hcloud" and sources.hcloud_token_file is not None:
        entry["api"] = {"kind": "hcloud", "endpoint": out.api.endpoint,
                        "token_file": str(sources.hcloud_token_file)}
    return entry


def _spare(stack: str, out: StackOutputs, files: SecretFiles,
           sources: Sources) -> dict[str, Any]:
    """What a spare has beyond a site: how `failover rebuild` makes its host."""
    assert out.provision is not None and out.agent_config is not None  # parse_outputs
    if sources.hcloud_token_file is None:
        raise UsageError(f"stack {stack}: spare {out.site} is made through Hetzner Cloud's "
                         "API: give its project's token with --hcloud-token-file")
    return {"provision": {**out.provision.model_dump(),
                          "token_file": str(sources.hcloud_token_file)},
            "agent_config_file": files.add(f"{out.site}-agent.yaml", out.agent_config),
            "requirement": out.app_version}


def _dns(stacks: Mapping[str, StackOutputs], files: SecretFiles) -> dict[str, Any]:
    """The zone and its DNS providers, from the one stack that holds the zone."""
    holders = [name for name, out in stacks.items() if out.dns is not None]
    if len(holders) != 1:
        raise ConfigError("exactly one stack must export dns (the zone), found "
                          f"{len(holders)}: {', '.join(holders) or 'none'}")
    out = stacks[holders[0]]
    assert out.dns is not None
    dns = out.dns
    providers: dict[str, Any] = {}
    if out.dns_credentials is not None:
        providers["route53"] = {
            "kind": "route53", "zone": dns.zone, "hosted_zone_id": dns.route53_zone_id,
            "credentials_file": files.keys("dns-route53.credentials", out.dns_credentials)}
    if dns.rfc2136 is not None and out.tsig_key is not None:
        key = TsigKey(out.tsig_key.name, out.tsig_key.algorithm, out.tsig_key.secret)
        providers["rfc2136"] = {"kind": "rfc2136", "zone": dns.zone,
                                "server": dns.rfc2136.server, "port": dns.rfc2136.port,
                                "tsig_key_file": files.add("tsig.key", key.to_bind())}
    return {"dns_providers": providers,
            "dns": {"zone": dns.zone, "low_ttl": dns.low_ttl,
                    "records": [r.model_dump() for r in dns.records]}}


def _repositories(stacks: Mapping[str, StackOutputs], files: SecretFiles) -> dict[str, Any]:
    """Every stack's backup repositories, each with its keys' file."""
    found: dict[str, Any] = {}
    for stack, out in stacks.items():
        for name, repo in out.repositories.items():
            if name in found:
                raise ConfigError(f"stack {stack}: output repositories.{name}: another "
                                  "stack has a repository of that name")
            keys = out.repository_credentials.get(name)
            if keys is None:
                raise ConfigError(f"stack {stack}: output repository_credentials.{name}: "
                                  "is required")
            found[name] = {**repo.model_dump(), "credentials_file": files.keys(
                f"repository-{name}.credentials", keys)}
    return found


def render(config: Mapping[str, Any]) -> str:
    """The configuration as the file's text."""
    return HEADER + yaml.safe_dump(dict(config), sort_keys=False)


def write_config(config: Mapping[str, Any], files: SecretFiles, out: Path | None, *,
                 force: bool = False) -> str:
    """Check the configuration, then write its secret files and (with ``out``) the file.

    Returns the file's text. Nothing is written unless the configuration loads,
    nor over files already there unless ``force``. Each file is replaced whole.
    """
    text = render(config)
    parse_config(yaml.safe_load(text), str(out or "the configuration"),
                 files.base or files.directory)
    check_trusted_dir(files.directory, "secrets directory")
    lost = would_replace(files, out)
    if lost and not force:
        raise UsageError(f"would overwrite {lost}, losing what is there now (edits made "
                         "since, another deployment's keys); pass --force to replace")
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, contents in files.contents.items():
        replace_file(path, contents)
    if out is not None:
        replace_file(out, text, CONFIG_MODE)  # it names secret files and holds none
    return text


def would_replace(files: SecretFiles, out: Path | None) -> str:
    """What writing would replace, in words (``failover.yaml and 2 secret files in ...``);
    empty when nothing is there yet."""
    there = [path for path in files.contents if path.exists() or path.is_symlink()]
    names = ", ".join(sorted(path.name for path in there))
    said = [str(out)] if out is not None and (out.exists() or out.is_symlink()) else []
    if there:
        plural = "s" if len(there) > 1 else ""
        said.append(f"{len(there)} secret file{plural} in {files.directory} ({names})")
    return " and ".join(said)
