"""What the lab looks like right now: each part's health and role, replication, DNS.

Every probe has a short timeout and they run side by side, so a frozen site
costs one timeout, not one per part.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from failover.data.postgres import PgEndpoint, server_state, standby_lags
from failover.processes import ProcessRecord, is_alive, tree_memory, uptime
from failover.watch.providers import Ec2ApiConfig, HcloudApiConfig, check_api
from infra.lab import bind, etcd, hcloud_api, moto, refapp, tls
from infra.lab.lab import Lab, LabState
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets, ec2_credentials_file, pgpass_file

PROBE_TIMEOUT = 2.0


def _pg(layout: LabLayout, paths: LabPaths, site: str) -> PgEndpoint:
    return PgEndpoint(layout.address(site), layout.postgres_port,
                      passfile=str(pgpass_file(paths)))


def _own_memory(parts: list[dict[str, Any]], records: list[ProcessRecord]) -> None:
    """An agent's line shows its own memory: its children have lines of their own (and the
    totals would count them twice)."""
    by_name = {p["name"]: p for p in parts}
    for record in records:
        parent = by_name.get(record.parent or "")
        if parent is not None:
            child = by_name[record.name]
            for key in ("rss_bytes", "pss_bytes"):
                parent[key] = max(0, parent[key] - child[key])


def _probe_part(
    record: ProcessRecord, layout: LabLayout, paths: LabPaths, secrets: LabSecrets
) -> dict[str, Any]:
    kind, _, site = record.name.partition("@")
    address, port = layout.where(record.name)
    rss, pss = tree_memory(record)
    part: dict[str, Any] = {
        "name": record.name, "kind": kind, "site": site or None, "address": address,
        "port": port, "pid": record.pid, "alive": is_alive(record), "health": "down",
        "role": None, "detail": None, "rss_bytes": rss, "pss_bytes": pss,
        "uptime_seconds": round(uptime(record), 1) if is_alive(record) else None,
    }
    if not part["alive"]:
        part["detail"] = "process not running"
        return part
    try:
        if kind == "postgres":
            with _pg(layout, paths, site).connect(timeout=PROBE_TIMEOUT) as conn:
                server = server_state(conn)
            part.update(role=server.role, detail=f"lsn {server.lsn}")
        elif kind == "app":
            ready = refapp.readiness(layout, site, timeout=PROBE_TIMEOUT)
            part.update(role=ready.get("role"),
                        detail="writable" if ready.get("writable") else "read-only")
            if ready["http_status"] != 200:
                raise RuntimeError(str(ready.get("database") or ready.get("error")))
        elif kind in ("moto", "route53"):
            httpx.get(f"{moto.endpoint(layout, record.name)}/moto-api/", timeout=PROBE_TIMEOUT)
        elif kind == "tls":  # the handshake; the moto behind it has a line of its own
            tls.handshake(address, port, PROBE_TIMEOUT)
            part["detail"] = f"TLS in front of moto@{site}"
        elif kind in ("ec2", "hcloud"):
            part["detail"] = _api_detail(record.name, layout, paths, secrets)
        elif kind == "bind9":
            bind.wait_ready(layout, timeout=PROBE_TIMEOUT)
        elif kind == "etcd":
            member = etcd.member_status(layout, site, PROBE_TIMEOUT)
            part.update(role=member["role"], detail=f"raft term {member['raft_term']}, "
                        f"{member['db_bytes'] / 2**20:.1f} MiB of data")
        part["health"] = "ok"
    except Exception as exc:  # a probe reports, it never raises
        part.update(health="failing", detail=str(exc).splitlines()[0][:200] if str(exc) else
                    type(exc).__name__)
    return part


def _api_detail(name: str, layout: LabLayout, paths: LabPaths, secrets: LabSecrets) -> str:
    """What the project's credentials get from a provider API; raises when it is silent.

    The controller's for ec2 and hcloud@hetzner, a rebuild's for hcloud@spare.
    Refused credentials are no fault of the part (a drill may have revoked
    them): the part is healthy, its detail says so.
    """
    kind = name.partition("@")[0]
    config: Ec2ApiConfig | HcloudApiConfig
    if kind == "ec2":
        config = Ec2ApiConfig(kind="ec2", endpoint_url=layout.ec2_endpoint,
                              region=layout.region, credentials_file=ec2_credentials_file(paths),
                              timeout=PROBE_TIMEOUT)
    else:
        hcloud_api.fake_state(layout, secrets, PROBE_TIMEOUT, name)  # raises when silent
        config = HcloudApiConfig(kind="hcloud", endpoint=hcloud_api.endpoint(layout, name),
                                 token_file=hcloud_api.token_file(paths, name),
                                 timeout=PROBE_TIMEOUT)
    answer = check_api(config, PROBE_TIMEOUT)
    if answer.status == "down":
        raise RuntimeError(answer.detail)
    detail = answer.detail.split(": ", 1)[1]
    return f"fake; {detail}" if kind == "hcloud" else detail


def _dns(layout: LabLayout, secrets: LabSecrets) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sources: dict[str, tuple[str, Callable[[], tuple[list[str], int | None]]]] = {
        "bind9": (f"{layout.dns_address}:{layout.dns_port}",
                  lambda: bind.answer(layout, layout.app_name)),
        "route53": (f"moto at {layout.route53_endpoint}",
                    lambda: moto.route53_answer(layout, secrets, PROBE_TIMEOUT)),
    }
    for provider, (server, ask) in sources.items():
        try:
            addresses, ttl = ask()
            out[provider] = {"server": server, "name": layout.app_name,
                             "answer": addresses, "ttl": ttl, "error": None}
        except Exception as exc:
            out[provider] = {"server": server, "name": layout.app_name, "answer": [],
                             "ttl": None, "error": str(exc) or type(exc).__name__}
    return out


def lab_status(lab: Lab) -> dict[str, Any]:
    """The lab's status as JSON-ready data (also what ``lab status --json`` prints)."""
    state: LabState | None = lab.state()
    base: dict[str, Any] = {"state_dir": str(lab.paths.root)}
    if state is None:
        return {**base, "running": False, "primary": None, "sites": {}, "dns": {}, "parts": []}
    layout, paths = state.layout, lab.paths
    secrets = LabSecrets.load(paths)
    with ThreadPoolExecutor(max_workers=len(state.processes) + 1) as pool:
        dns_future = pool.submit(_dns, layout, secrets)
        parts = list(pool.map(lambda r: _probe_part(r, layout, paths, secrets), state.processes))
        dns = dns_future.result()
    _own_memory(parts, state.processes)
    db_roles = {p["site"]: p["role"] for p in parts if p["kind"] == "postgres"}
    primaries = [site for site, role in db_roles.items() if role == "primary"]
    lags: dict[str, Any] = {}
    if len(primaries) == 1:
        try:
            with _pg(layout, paths, primaries[0]).connect(timeout=PROBE_TIMEOUT) as conn:
                lags = {lag.name: lag for lag in standby_lags(conn)}
        except Exception:
            lags = {}
    sites: dict[str, Any] = {}
    for site in layout.sites:
        lag = lags.get(site)
        sites[site] = {
            "address": layout.address(site),
            "role": db_roles.get(site) or ("empty" if site not in db_roles else "down"),
            "app_url": layout.app_url(site) if site in db_roles else None,
            "replication": lag.state if lag else None,
            "sync_state": lag.sync_state if lag else None,
            "lag_bytes": lag.lag_bytes if lag else None,
            "lag_seconds": round(lag.lag_seconds, 3) if lag else None,
        }
    return {
        **base,
        "running": state.complete and all(p["alive"] for p in parts),
        "healthy": state.complete and all(p["health"] == "ok" for p in parts),
        "started_at": state.started_at,
        "primary": primaries[0] if len(primaries) == 1 else None,
        "primaries": primaries,
        "app_name": layout.app_name,
        "sites": sites,
        "dns": dns,
        "parts": parts,
        "memory_rss_bytes": sum(p["rss_bytes"] for p in parts),
        "memory_pss_bytes": sum(p["pss_bytes"] for p in parts),
    }


def render(status: dict[str, Any]) -> str:
    """The status as a few lines for a terminal."""
    if not status["parts"]:
        return f"no lab in {status['state_dir']} (start one: failover lab up)"
    verdict = "healthy" if status["healthy"] else ("running, degraded" if status["running"]
                                                   else "NOT running")
    lines = [
        f"lab in {status['state_dir']}: {verdict}; primary: {status['primary'] or 'NONE'}"
        + (f" (several: {', '.join(status['primaries'])})" if len(status["primaries"]) > 1 else ""),
        "",
        # PSS: the lab's servers are forked from parents whose pages they share (RSS
        # would count those pages once a process); PSS divides them, so the lines add up.
        f"  {'PART':<18}{'ADDRESS':<22}{'PID':>8}  {'HEALTH':<9}{'ROLE':<9}{'PSS':>8}  DETAIL",
    ]
    for p in status["parts"]:
        lines.append(
            f"  {p['name']:<18}{p['address'] + ':' + str(p['port']):<22}{p['pid']:>8}  "
            f"{p['health']:<9}{p['role'] or '-':<9}{p['pss_bytes'] / 2**20:>6.0f}Mi  "
            f"{p['detail'] or ''}"
        )
    lines += ["", "  replication"]
    for name, site in status["sites"].items():
        if site["replication"]:
            lines.append(
                f"    {name}: {site['replication']} ({site['sync_state']}), lag "
                f"{site['lag_bytes']} bytes / {site['lag_seconds']:.3f} s"
            )
        elif site["role"] == "standby":
            lines.append(f"    {name}: standby, NOT streaming")
        elif site["role"] == "empty":
            lines.append(f"    {name}: empty site at {site['address']} (target for rebuilds)")
    lines += ["", f"  dns {status['app_name']}"]
    for provider, d in status["dns"].items():
        answer = ", ".join(d["answer"]) or "no answer"
        detail = f"error: {d['error']}" if d["error"] else f"{answer} (ttl {d['ttl']})"
        lines.append(f"    {provider:<9} at {d['server']:<30} {detail}")
    lines.append(
        f"\n  memory of all processes: RSS {status['memory_rss_bytes'] / 2**20:.0f} MiB, "
        f"PSS {status['memory_pss_bytes'] / 2**20:.0f} MiB (shared pages counted once)"
    )
    return "\n".join(lines)
