"""The actions a plan's steps name: each idempotent, bounded by its step's timeout.

An action looks before it acts, so running it again after a crash (or after
it already succeeded) does no harm: a fence finds the server fenced, a
promote finds a primary, a publish finds the records in place. Each returns
JSON-ready facts for the journal; later steps read earlier ones' facts
(the catch-up waits for the LSN the fence recorded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from failover.data import fencing, objectsync, postgres, replication
from failover.dns.publish import PublishResult, publish
from failover.engine import checks
from failover.engine.deployment import ASK_TIMEOUT, Deployment
from failover.engine.plan import Plan, Step
from failover.exceptions import FailoverError, StaleToken, StepFailed
from failover.waiting import WaitTimeout, wait_for

Progress = Callable[[str], None]
DARK_STORE_TIMEOUT = 1.0  # seconds per request to the object store of a site seen dark
RPO_REPLAY_WAIT = 5.0  # seconds a standby gets to replay what it received before promotion
LEASE_POLL = 0.5  # seconds between two looks at an old primary's lease (its hold may go early)


@dataclass(frozen=True)
class StepContext:
    """What an action gets: the deployment, its step, earlier results, its deadline."""

    deployment: Deployment
    plan: Plan
    index: int
    step: Step
    results: Mapping[str, dict[str, Any]]  # earlier steps' results by action (last wins)
    deadline: float  # time.monotonic() by which the step must be done
    progress: Progress

    def remaining(self) -> float:
        """Seconds left before the step's deadline (at least a little)."""
        return max(0.5, self.deadline - time.monotonic())

    def param(self, name: str) -> Any:
        """A parameter of the step."""
        return self.step.params[name]

    def earlier(self, action: str) -> dict[str, Any]:
        """The result of the latest earlier step of ``action``; fails if it never ran."""
        if action not in self.results:
            raise StepFailed(f"step {self.step.action} needs the result of {action}, which has "
                             "not run")
        return self.results[action]


Action = Callable[[StepContext], dict[str, Any]]
ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    """Register an action under the name plans use."""
    def register(fn: Action) -> Action:
        ACTIONS[name] = fn
        return fn
    return register


# --- checks ---------------------------------------------------------------


@action("check_switchover")
def check_switchover(ctx: StepContext) -> dict[str, Any]:
    """The source is the only primary, the target streams from it, its app is ready."""
    source, target = ctx.param("from"), ctx.param("to")
    topology = ctx.deployment.observe(timeout=min(ASK_TIMEOUT, ctx.remaining()))
    problem = checks.switchover_problem(ctx.deployment, topology, source, target,
                                        ctx.param("max_lag_bytes"))
    if problem:
        raise StepFailed(problem)
    return {"source_lsn": topology.sites[source].lsn, "target_lsn": topology.sites[target].lsn}


@action("check_emergency")
def check_emergency(ctx: StepContext) -> dict[str, Any]:
    """The target answers as a standby streaming from no one, no site as a primary."""
    target = ctx.param("to")
    topology = ctx.deployment.observe(timeout=min(ASK_TIMEOUT, ctx.remaining()))
    problem = checks.emergency_problem(ctx.deployment, topology, target)
    if problem:
        raise StepFailed(problem)
    return {"role": topology.sites[target].role, "lsn": topology.sites[target].lsn}


@action("check_rejoin")
def check_rejoin(ctx: StepContext) -> dict[str, Any]:
    """The new primary is the only primary and answers."""
    primary, site = ctx.param("primary"), ctx.param("site")
    topology = ctx.deployment.observe(timeout=min(ASK_TIMEOUT, ctx.remaining()))
    if topology.sites[primary].role != "primary":
        raise StepFailed(f"{primary} is not a primary; it cannot take {site} as a standby")
    return {"site_role": topology.sites[site].role, "site_error": topology.sites[site].error}


@action("check_result")
def check_result(ctx: StepContext) -> dict[str, Any]:
    """The new primary is the only primary, standbys stream from it, DNS answers it."""
    primary = ctx.param("primary")
    topology = ctx.deployment.observe(timeout=min(ASK_TIMEOUT, ctx.remaining()))
    if topology.primaries != [primary]:
        raise StepFailed(
            f"expected {primary} to be the only primary, found "
            f"{', '.join(topology.primaries) or 'none'}"
        )
    for standby in ctx.param("standbys"):
        view = topology.sites[standby]
        if view.upstream != primary:
            raise StepFailed(
                f"{standby} does not stream from {primary} ({view.error or view.role})"
            )
    desired = ctx.deployment.records(primary, ctx.param("ttl"))
    answers = {p.name: p.verify(desired) for p in ctx.deployment.dns_providers}
    wrong = [name for name, result in answers.items() if not result.ok]
    return {
        "dns": {name: result.ok for name, result in answers.items()},
        "warnings": [f"DNS provider {name} does not answer {primary}" for name in wrong],
    }


# --- DNS ------------------------------------------------------------------


def _published(ctx: StepContext, site: str, ttl: int) -> dict[str, Any]:
    result: PublishResult = publish(ctx.deployment.dns_providers, ctx.deployment.records(site, ttl))
    providers = {o.provider: ("ok" if o.ok else o.error or "not verified") for o in result.outcomes}
    if not any(o.ok for o in result.outcomes):
        raise StepFailed(
            "no DNS provider took the change: "
            + "; ".join(f"{name}: {why}" for name, why in providers.items())
        )
    return {
        "providers": providers,
        "warnings": [f"DNS provider {n} failed: {providers[n]}" for n in result.failed],
    }


@action("lower_ttl")
def lower_ttl(ctx: StepContext) -> dict[str, Any]:
    """Publish the records unchanged but with the low TTL; note when old caches expire."""
    result = _published(ctx, ctx.param("site"), ctx.param("ttl"))
    # Caches may hold the old answer with the normal TTL from the moment before this.
    return {**result, "caches_expire_at": time.time() + ctx.deployment.normal_ttl}


@action("wait_low_ttl")
def wait_low_ttl(ctx: StepContext) -> dict[str, Any]:
    """Wait until answers cached with the old, longer TTL have expired everywhere."""
    wait = ctx.earlier("lower_ttl")["caches_expire_at"] - time.time()
    if wait > 0:
        ctx.progress(f"waiting {wait:.1f}s for answers cached with the old TTL to expire")
        if wait > ctx.remaining():
            raise StepFailed(f"caches of the old TTL expire in {wait:.0f}s, after this step's "
                             "deadline")
        time.sleep(wait)
    return {"waited": round(max(wait, 0.0), 3)}


@action("switch_dns")
def switch_dns(ctx: StepContext) -> dict[str, Any]:
    """Point the records at the new primary at every provider, and verify each."""
    return _published(ctx, ctx.param("site"), ctx.param("ttl"))


@action("restore_ttl")
def restore_ttl(ctx: StepContext) -> dict[str, Any]:
    """Publish the records with their normal TTL again."""
    return _published(ctx, ctx.param("site"), ctx.deployment.normal_ttl)


# --- objects --------------------------------------------------------------


@action("sync_objects")
def sync_objects(ctx: StepContext) -> dict[str, Any]:
    """Copy what the source bucket has and the target lacks; verify against the sync's listing."""
    source, target = ctx.param("from"), ctx.param("to")
    only_missing = ctx.step.params.get("only_missing", False)
    config = ctx.deployment.config
    started = time.monotonic()
    last = [0.0]

    def report(p: objectsync.SyncProgress) -> None:
        if time.monotonic() - last[0] >= 1.0 or p.done == p.total:
            last[0] = time.monotonic()
            ctx.progress(f"objects {p.done}/{p.total}, {p.bytes_done}/{p.bytes_total} bytes")

    source_store = config.site(source).objects
    if ctx.deployment.ask_timeout(source) < ASK_TIMEOUT:
        # The controller saw the source go dark: a store that answers does so at once,
        # and one that hangs must not hold the end of an emergency for its full timeout.
        source_store = source_store.model_copy(
            update={"timeout": min(source_store.timeout, DARK_STORE_TIMEOUT)})
    try:
        result = objectsync.sync_bucket(
            source_store, config.site(target).objects, progress=report,
            only_missing=only_missing,
        )
        # Against what the sync listed: the source may take new objects meanwhile.
        verify = objectsync.verify_bucket(
            source_store, config.site(target).objects, snapshot=result.snapshot,
        )
    except Exception as exc:
        if not ctx.param("best_effort"):
            raise
        return {"warnings": [f"objects not synced from {source}: {exc}"]}
    problems = objectsync.problems(result, verify, target, only_missing=only_missing)
    facts = {**result.to_dict(), "verified": verify.checked,
             "seconds": round(time.monotonic() - started, 3)}
    if problems:
        message = f"{len(problems)} objects did not sync: {'; '.join(problems[:5])}"
        if not ctx.param("best_effort"):
            raise StepFailed(message)
        facts["warnings"] = [message]
    return facts


# --- PostgreSQL -----------------------------------------------------------


@action("synchronous_replication")
def synchronous_replication(ctx: StepContext) -> dict[str, Any]:
    """Make commits at the primary wait until the standby has applied them."""
    primary, standby = ctx.param("primary"), ctx.param("standby")
    name = ctx.deployment.application_name(standby)
    with ctx.deployment.endpoint(primary).connect(timeout=min(5.0, ctx.remaining())) as conn:
        replication.set_synchronous(conn, name)
        replication.wait_synchronous(conn, name, timeout=ctx.remaining())
    return {"standby": name, "synchronous_commit": "remote_apply"}


@action("fence")
def fence(ctx: StepContext) -> dict[str, Any]:
    """Refuse every connection but replication and ours, end every session; note the LSN."""
    site = ctx.param("site")
    try:
        endpoint = ctx.deployment.endpoint(site)
        # A best-effort fence is tried on a primary believed gone: ask briefly.
        patience = ctx.deployment.ask_timeout(site) if ctx.param("best_effort") else 5.0
        conn = endpoint.connect(timeout=min(patience, ctx.remaining()))
    except Exception as exc:
        if ctx.param("best_effort"):
            why = " ".join(str(exc).split())
            by_agent = _fence_by_agent(ctx, site)
            if by_agent is not None:
                return by_agent
            return {"fenced": False, "warnings": [
                f"{site} could not be fenced: its database does not answer ({why}); it must "
                f"not come back as a primary: rejoin it (failover rejoin --site {site})"
            ]}
        raise
    with conn:
        if postgres.server_state(conn).role != "primary":
            if ctx.param("best_effort"):
                return {"fenced": False, "warnings": [f"{site} is not a primary: not fenced"]}
            raise StepFailed(f"{site} is not a primary; there is nothing to fence")
        note = f"{ctx.plan.kind} to {ctx.plan.to_site}"
        fenced = fencing.fence(conn, endpoint.user, note, timeout=ctx.remaining())
    return {
        "fenced": True, "lsn": fenced.lsn, "original_hba": fenced.original_hba,
        "terminated": fenced.terminated, "already": fenced.already,
    }


def _fence_by_agent(ctx: StepContext, site: str) -> dict[str, Any] | None:
    """Fence through the site's agent when its database cannot be reached; None if not."""
    agent = ctx.deployment.agent(site)
    if agent is None:
        return None
    try:
        done = agent.fence(f"{ctx.plan.kind} to {ctx.plan.to_site}",
                           timeout=min(ctx.deployment.ask_timeout(site), ctx.remaining()))
    except StaleToken:
        raise  # deposed: not a fence that failed, an order to stop
    except FailoverError:
        return None
    return {"fenced": True, "by": "agent", "lsn": done.get("lsn"),
            "original_hba": done.get("original_hba"), "terminated": done.get("terminated"),
            "already": done.get("already")}


@action("await_lease")
def await_lease(ctx: StepContext) -> dict[str, Any]:
    """Before promoting, let the old primary's lease lapse, unless it was positively fenced.

    Its agent fences it the moment its lease lapses, so once this returns the
    old primary takes no more writes, whether it answers or not. With the
    lease in etcd, the end is known only once its hold is gone: asked again
    every LEASE_POLL seconds.
    """
    site = ctx.param("site")
    if ctx.results.get("fence", {}).get("fenced"):
        return {"waited": 0.0, "why": f"{site} was fenced"}
    leases = ctx.deployment.primary_leases
    leases.withhold(site)  # from now on no renewal can extend what is waited for
    waited = 0.0
    while True:
        lapsed_by = leases.lapsed_by(site)
        if lapsed_by is None:
            return {"waited": 0.0, "why": f"{site} never held a lease (no controller keeps "
                    "them)"}
        wait = lapsed_by - time.time()
        if wait <= 0:
            return {"waited": round(waited, 3), "lapsed_at": lapsed_by}
        if wait > ctx.remaining():
            raise StepFailed(f"{site}'s lease ends in {wait:.1f}s, after this step's deadline")
        ctx.progress(f"waiting {wait:.1f}s for {site}'s lease to lapse (it then fences itself)")
        time.sleep(min(wait, LEASE_POLL))
        waited += min(wait, LEASE_POLL)


@action("catch_up")
def catch_up(ctx: StepContext) -> dict[str, Any]:
    """Wait until the standby has replayed everything up to the fenced LSN."""
    lsn = ctx.earlier("fence")["lsn"]
    with ctx.deployment.endpoint(ctx.param("site")).connect(timeout=min(5.0, ctx.remaining())) \
            as conn:
        state = postgres.server_state(conn)
        if state.role == "primary":
            # Promoted in an earlier attempt: it replayed up to the LSN before that.
            return {"replayed": state.lsn, "fenced_lsn": lsn, "already": True}
        replayed = replication.wait_replayed(conn, lsn, timeout=ctx.remaining())
    return {"replayed": replayed, "fenced_lsn": lsn}


@action("promote")
def promote(ctx: StepContext) -> dict[str, Any]:
    """Promote the standby (asynchronous commits first: it has no standby of its own yet)."""
    site = ctx.param("site")
    # Checked here, not only when planning: a resumed run may find the world changed
    # (an old primary back, or unfenced by hand), and two primaries is the one outcome
    # a promote must never produce.
    others = [p for p in ctx.deployment.observe(timeout=min(ASK_TIMEOUT, ctx.remaining())).primaries
              if p != site]
    if others:
        raise StepFailed(
            f"{', '.join(others)} answers as a primary and is not fenced; promoting {site} "
            "would make two primaries"
        )
    _release_lease(ctx, site)
    with ctx.deployment.endpoint(site).connect(timeout=min(5.0, ctx.remaining())) as conn:
        # A former primary's own settings may still name a synchronous standby; with
        # none streaming, every commit would wait for ever.
        replication.set_asynchronous(conn)
        promoted = replication.promote(conn, timeout=ctx.remaining())
        state = postgres.server_state(conn)
    if state.role != "primary":
        raise StepFailed(f"{site} still reports {state.role} after promotion")
    return {"promoted": promoted, "lsn": state.lsn}


def _release_lease(ctx: StepContext, site: str) -> None:
    """Clear a lease the site may keep from its days as a primary before promoting it.

    A lapsed one would fence the new primary the next time its agent starts the
    server; a controller that runs renews the new primary's lease at once (in
    etcd: the decision names the site, and its agent takes the lease; without
    etcd no promote goes on).
    """
    ctx.deployment.primary_leases.allow(site)
    agent = ctx.deployment.agent(site)
    if agent is None:
        return
    try:
        agent.release_lease(timeout=min(2.0, ctx.remaining()))
    except StaleToken:
        raise  # deposed: the promote that follows must not happen
    except FailoverError as exc:
        ctx.progress(f"warning: {site}'s agent did not clear its lease: {exc}")


@action("wait_writable")
def wait_writable(ctx: StepContext) -> dict[str, Any]:
    """Wait until the new primary's app reports itself writable."""
    site = ctx.param("site")
    body = wait_for(
        lambda: (r := ctx.deployment.readiness(site, timeout=1.0)).body.get("writable") and r,
        timeout=ctx.remaining(), what=f"{site}'s app to accept writes",
        retry_on=(),  # readiness answers an unreachable app as not ready; it raises no error
    )
    return {"app": body.detail}


@action("rejoin")
def rejoin(ctx: StepContext) -> dict[str, Any]:
    """Turn the former primary into a streaming standby of the new one."""
    site, primary = ctx.param("site"), ctx.param("primary")
    compute = ctx.deployment.compute(site)
    if compute is None:
        raise StepFailed(
            f"site {site} has no compute adapter in {ctx.deployment.source}: make it a standby "
            f"of {primary} by hand, then run the command again"
        )
    fenced = ctx.results.get("fence", {})
    how = compute.rejoin_database(
        site, primary, hba=fenced.get("original_hba"), timeout=ctx.remaining()
    )
    return {"how": how}


@action("check_rpo")
def check_rpo(ctx: StepContext) -> dict[str, Any]:
    """Let the standby replay all it received; record what is known of what it lacks."""
    site = ctx.param("site")
    with ctx.deployment.endpoint(site).connect(timeout=min(5.0, ctx.remaining())) as conn:
        receiver = postgres.wal_receiver(conn)
        replay_gap = None
        if receiver is not None and receiver.received_lsn:
            # A record cut off mid-stream is received but can never be replayed:
            # wait a little, not for ever; promotion replays all that can be.
            try:
                replication.wait_replayed(conn, receiver.received_lsn, timeout=min(
                    RPO_REPLAY_WAIT, ctx.remaining()))
            except (FailoverError, WaitTimeout) as exc:
                replay_gap = str(exc)
        receiver = postgres.wal_receiver(conn)
    return {
        "receiver": receiver.to_dict() if receiver else None,
        "replay_gap": replay_gap,
        "synchronous": ctx.param("synchronous"),
        "accept_data_loss": ctx.param("accept_data_loss"),
    }
