"""Rebuild a whole site at a provider that had nothing: its host, its database, its objects.

``failover rebuild --site SPARE`` works on a spare (``spares`` in the config:
a site with its address reserved and a ``provision`` section). The plan:

1. check: what the site becomes (the primary when no site answers as one,
   else a standby of the one that does), and that no live site is in the way;
2. provision the host through the provider's API, with cloud-init user-data
   that installs and starts the site agent, and wait for the agent to answer;
3. restore PostgreSQL through the agent from the first repository that
   answers (those at the spare's own provider first: the nearest, and after
   a total loss the likeliest to be left), to a time or to the archive's end;
4. copy the objects the site's bucket lacks from every other bucket that
   still answers (the continuous copies already put most of them there);
5. as the primary: wait for the app to take writes, point DNS at the site at
   every provider that answers; as a standby: check it streams;
6. say how to make it a site of the configuration (``register``).

Every step is idempotent (the provisioning finds what it made, the agent's
restore resumes), so the same command resumes a run that stopped.
"""

from __future__ import annotations

import string
import time
from pathlib import Path
from typing import Any

from failover.agent.install import render_user_data
from failover.agent.protocol import agent_secret
from failover.config import FailoverConfig, SpareConfig
from failover.engine.deployment import ASK_TIMEOUT, Deployment, Topology
from failover.engine.plan import Plan, Step
from failover.engine.steps import StepContext, action
from failover.exceptions import ConfigError, ProviderError, StepFailed, UnsafePlan
from failover.provision.config import Ec2ProvisionConfig
from failover.provision.ec2 import Ec2Host
from failover.provision.hcloud import HcloudHost
from failover.waiting import wait_for

ROLES = ("primary", "standby")
RESTORE_TIMEOUT = 4 * 3600.0


def spare_of(deployment: Deployment, site: str) -> SpareConfig:
    """The spare ``site`` as the deployment (made with ``with_spare``) holds it."""
    spec = deployment.config.site(site)
    if not isinstance(spec, SpareConfig):
        raise ConfigError(f"{site} is a site, not a spare: `failover rebuild` makes a spare "
                          "(spares: in the config) from nothing")
    return spec


def rebuild_deployment(deployment: Deployment, site: str, *,
                       without_cluster: bool = False) -> Deployment:
    """The deployment with the spare among its sites, so that every step can reach it.

    ``without_cluster``: its run lock, journal and store are the files beside the
    journal even with ``watch.cluster`` (``FailoverConfig.without_cluster``), for a
    rebuild while etcd has no quorum.
    """
    config = deployment.config.with_spare(site)
    return Deployment(config.without_cluster() if without_cluster else config,
                      deployment.source)


def repositories_in_order(config: FailoverConfig, site: str) -> list[str]:
    """The repositories to restore from: at the spare's own provider first, then the rest."""
    if config.backups is None:
        raise ConfigError("the config has no backups section: there is nothing to rebuild "
                          "from (backups: {repositories: ...})")
    provider = config.site(site).provider
    repos = config.backups.repositories
    return sorted(repos, key=lambda name: (repos[name].provider != provider, name))


def plan_rebuild(deployment: Deployment, site: str, topology: Topology, *,
                 role: str | None = None, to_time: str | None = None) -> Plan:
    """The plan that makes spare ``site`` a primary or a standby, from its backups."""
    spare_of(deployment, site)
    others = [p for p in topology.primaries if p != site]
    if role is None:
        role = "standby" if others else "primary"
    if role not in ROLES:
        raise UnsafePlan(f"--as must be primary or standby, not {role!r}")
    if role == "primary" and others:
        raise UnsafePlan(f"{others[0]} answers as the primary: a rebuilt site can only be its "
                         f"standby (--as standby), or fence {others[0]} first")
    if role == "standby" and len(others) != 1:
        raise UnsafePlan("a standby needs the one primary to stream from, and the primaries "
                         f"answering are: {', '.join(others) or 'none'}")
    if role == "standby" and to_time:
        raise UnsafePlan("--to-time is for a primary: a standby follows its primary to now")
    primary = others[0] if others else None
    gone = [s for s in deployment.config.sites if s != site and s not in topology.primaries]
    repos = repositories_in_order(deployment.config, site)
    spare = spare_of(deployment, site)
    notes = [f"{site} becomes the {role}" + (f" of {primary}" if primary else "") +
             f", restored from the first of: {', '.join(repos)} that answers"]
    if role == "primary" and gone:
        notes.append(f"{', '.join(gone)} do not answer as primary; if one comes back it "
                     f"must not serve: `failover rejoin --site SITE` makes it a standby")
    steps = [
        Step("check_rebuild", f"{site} can still become the {role}",
             {"site": site, "role": role, "primary": primary}, 30, retry=True, changes=False),
        Step("provision", f"make {site}'s host at {spare.provider} ({spare.provision.kind}) "
             "and wait for its agent", {"site": site}, spare.boot_timeout + 120, retry=True),
        Step("restore_database", f"restore {site}'s database from a backup and the archived "
             f"WAL ({'to ' + to_time if to_time else 'to its end'})",
             {"site": site, "role": role, "primary": primary, "repositories": repos,
              "target_time": to_time}, RESTORE_TIMEOUT, retry=True),
    ]
    steps += [Step("sync_objects", f"copy what {site}'s bucket lacks from {other} "
                   "(missing only, if it answers)",
                   {"from": other, "to": site, "best_effort": True, "only_missing": True},
                   3600, retry=True) for other in deployment.config.sites if other != site]
    if role == "primary":
        steps += [
            Step("start_app", f"start {site}'s app", {"site": site}, 60, retry=True),
            Step("wait_writable", f"wait until {site}'s app accepts writes", {"site": site},
                 120, retry=True, changes=False),
            Step("switch_dns", f"point the records at {site} at every DNS provider and verify",
                 {"site": site, "ttl": deployment.normal_ttl}, 60, retry=True),
        ]
    steps.append(Step("check_result", f"{site} is the only primary and DNS answers it"
                      if role == "primary" else f"{site} streams from {primary}",
                      {"primary": primary or site, "standbys": [] if primary is None else [site],
                       "ttl": deployment.normal_ttl}, 60, retry=True, changes=False))
    return Plan("rebuild", primary or "-", site, tuple(steps), tuple(notes))


@action("check_rebuild")
def check_rebuild(ctx: StepContext) -> dict[str, Any]:
    """The role is still possible; sites that do not answer are taken for dark."""
    site, role, primary = ctx.param("site"), ctx.param("role"), ctx.param("primary")
    topology = ctx.deployment.observe(timeout=min(ASK_TIMEOUT, ctx.remaining()))
    others = [p for p in topology.primaries if p != site]
    if role == "primary" and others:
        raise StepFailed(f"{others[0]} answers as primary now: rebuild {site} as its standby")
    if role == "standby" and others != [primary]:
        raise StepFailed(f"{primary} no longer answers as the only primary "
                         f"({', '.join(others) or 'none'})")
    for name, view in topology.sites.items():
        if name != site and not view.reachable:
            # Lost with its provider, as like as not: what is asked of it later (its
            # objects) waits seconds, not a full timeout per request.
            ctx.deployment.mark_dark(name, 3600)
    return {"site_role": topology.sites[site].role, "primaries": topology.primaries}


def _user_data(spare: SpareConfig, site: str, address: str) -> str:
    """The new host's cloud-init user-data: its agent's config (with its address) and secret."""
    try:
        template = spare.agent_config_file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {site}'s agent config {spare.agent_config_file}: {exc}") \
            from None
    text = string.Template(template).safe_substitute(address=address)
    if spare.compute is None:
        raise ConfigError(f"spare {site} has no compute section: its agent is how it is rebuilt")
    secret = agent_secret(spare.compute.secret_file).decode()
    return render_user_data(site=site, requirement=spare.requirement, config_text=text,
                            secret=secret, config_path=Path(spare.agent_config_path),
                            secret_path=Path(spare.agent_secret_path))


@action("provision")
def provision(ctx: StepContext) -> dict[str, Any]:
    """Make the host through the provider's API (or find it made), then wait for its agent."""
    site = ctx.param("site")
    spare = spare_of(ctx.deployment, site)
    address = str(spare.address)
    host = host_of(spare, site)
    sources = [str(s.address) for n, s in ctx.deployment.config.sites.items() if n != site]
    sources += spare.provision.admin_sources
    agent_port = _port(spare.compute.url) if spare.compute else 7070
    made = host.ensure(_user_data(spare, site, address), app_port=_port(spare.app_url),
                       private_ports=[spare.database.port, agent_port], sources=sources,
                       say=ctx.progress)
    if made["address"] != address:
        raise StepFailed(f"{site}'s primary IP is {made['address']}, but the config reserves "
                         f"{address}: put {made['address']} in spares.{site} (address, app_url, "
                         "database.host, compute.url) and run the command again")
    agent = ctx.deployment.agent(site)
    assert agent is not None
    ctx.progress(f"waiting for {site}'s agent at {spare.compute.url if spare.compute else '?'}")
    t0 = time.monotonic()
    wait_for(lambda: agent.status(timeout=2.0), timeout=ctx.remaining(),
             what=f"{site}'s agent to answer", retry_on=ProviderError)
    return {**made, "boot_seconds": round(time.monotonic() - t0, 2)}


def host_of(spare: SpareConfig, site: str) -> HcloudHost | Ec2Host:
    """The spare's host at its provider, by the kind of its provision section."""
    if isinstance(spare.provision, Ec2ProvisionConfig):
        return Ec2Host(spare.provision, site)
    return HcloudHost(spare.provision, site)


def _port(url: str) -> int:
    tail = url.rsplit(":", 1)[-1].split("/")[0]
    return int(tail) if tail.isdigit() else (443 if url.startswith("https") else 80)


@action("restore_database")
def restore_database(ctx: StepContext) -> dict[str, Any]:
    """Restore through the site's agent from the first repository that serves a backup."""
    site, role = ctx.param("site"), ctx.param("role")
    agent = ctx.deployment.agent(site)
    assert agent is not None
    primary = ctx.param("primary")
    upstream = None
    if primary is not None:
        db = ctx.deployment.config.site(primary).database
        upstream = {"host": db.host, "port": db.port}
    failures = []
    for repo in ctx.param("repositories"):
        ctx.progress(f"restoring {site} from repository {repo}")
        body = {"repository": repo, "target_time": ctx.param("target_time"), "as": role,
                "primary": upstream}
        try:
            op = agent.next_attempt(_restore_op(ctx, repo), timeout=ASK_TIMEOUT)
            result = agent.run("restore", body, timeout=ctx.remaining(), op=op,
                               progress=ctx.progress)
        except ProviderError as exc:
            failures.append(f"{repo}: {exc}")
            continue
        return {**result, "warnings": failures}
    raise StepFailed("no repository could restore the site: " + "; ".join(failures))


def _restore_op(ctx: StepContext, repo: str) -> str:
    """The restore's operation id: the same on a resumed run, new for a new host."""
    server = ctx.earlier("provision").get("server_id")
    return f"restore-{server}-{ctx.plan.checksum()[:10]}-{repo}"


@action("start_app")
def start_app(ctx: StepContext) -> dict[str, Any]:
    """Start the site's app through its agent (it runs it from now on)."""
    agent = ctx.deployment.agent(ctx.param("site"))
    assert agent is not None
    return agent.start_app(timeout=ctx.remaining())
