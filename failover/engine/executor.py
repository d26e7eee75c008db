"""The executor: runs a plan's steps in order, journals each, resumes after a crash.

Resuming is running the same command again: the executor finds the run that
did not finish, checks that it is the same move, and carries on from the
first step that did not end well, with the plan it started with. Steps are
idempotent, so the one that was cut short simply runs again. Only one run at
a time: the run lock (``failover.state.run_lock``: beside the journal, or in
etcd with ``watch.cluster``) keeps a second one out.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import psycopg
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from failover.engine.deployment import Deployment
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan, Step
from failover.engine.steps import ACTIONS, StepContext
from failover.exceptions import FailoverError, ProviderError, StaleToken, StepFailed
from failover.state import RunBusy as RunBusy
from failover.state import run_lock as state_run_lock
from failover.state import run_lock_held as state_run_lock_held
from failover.waiting import WaitTimeout

Progress = Callable[[str], None]
StepHook = Callable[[int, Step], None]
CRASH_AFTER_STEP = "FAILOVER_CRASH_AFTER_STEP"  # chaos tests: an action's name
FREEZE_BEFORE_STEP = "FAILOVER_FREEZE_BEFORE_STEP"  # drills: an action's name

# Errors worth another try: the network or a server blinked. A StepFailed is a
# judgement (the standby is too far behind), and judgements are not retried.
TRANSIENT = (psycopg.OperationalError, OSError, httpx.TransportError, ProviderError)
RETRYABLE_PROVIDER_CODES = frozenset({"UNREACHABLE", "TIMEOUT", "Throttling", "SlowDown",
                                      "InternalError", "ServiceUnavailable"})


def transient(exc: BaseException) -> bool:
    """Whether another try may succeed: the network blinked, not a refusal or a judgement."""
    if isinstance(exc, WaitTimeout | StepFailed | StaleToken):
        return False  # a wait already used its time; a judgement stands; a deposed leader stops
    if isinstance(exc, ProviderError):
        return exc.code in RETRYABLE_PROVIDER_CODES
    return isinstance(exc, TRANSIENT)


def one_line(exc: BaseException) -> str:
    """An error as one line (libpq's messages carry hints on further lines)."""
    text = str(exc) if isinstance(exc, FailoverError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _quiet(_: str) -> None:
    pass


def run_lock(deployment: Deployment) -> AbstractContextManager[None]:
    """Hold the deployment's run lock (one run at a time), or fail at once (RunBusy)."""
    return state_run_lock(deployment.config, deployment.source)


def run_lock_held(deployment: Deployment) -> bool:
    """Whether a run holds the deployment's run lock now (this process's or another's)."""
    return state_run_lock_held(deployment.config, deployment.source)


def unfinished_run(deployment: Deployment) -> RunRecord | None:
    """The newest run, if it did not end well and had begun to change things."""
    last = deployment.journal.last()
    if last is None or last.settled or not last.changed_anything():
        return None
    return last


def _run_step(ctx: StepContext, progress: Progress) -> dict[str, Any]:
    act = ACTIONS[ctx.step.action]
    if not ctx.step.retry:
        return act(ctx)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        progress(f"          {ctx.step.action}: {one_line(error)}; trying again"
                 if error else f"          {ctx.step.action}: trying again")

    retrying = Retrying(
        stop=stop_after_delay(ctx.step.timeout),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception(transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(act, ctx)


def execute(
    deployment: Deployment, plan: Plan, *, resume: RunRecord | None = None,
    progress: Progress = _quiet, before_step: StepHook | None = None,
) -> RunRecord:
    """Run ``plan`` (or finish ``resume``), journaling every step; returns the run's record.

    ``before_step(index, step)`` is called as each step is about to begin: a
    drill injects its second fault there (a DNS provider lost mid-move).

    Raises StepFailed naming the step when one fails; the journal then holds
    everything needed to resume. Raises StaleToken, not retried, when an agent
    or the journal has seen a newer leader's token: this one was deposed and
    stops, and the new leader resumes the run.
    """
    journal = deployment.journal
    if resume is not None:
        run_id, plan = resume.id, resume.plan
        journal.resumed(run_id)
        done = resume.done()
        results = {s.action: s.result for s in resume.steps() if s.outcome == "ok"}
        progress(f"resuming run {run_id} ({plan.kind} {plan.from_site} -> {plan.to_site}); "
                 f"{len(done)} of {len(plan.steps)} steps already done")
    else:
        run_id = journal.begin(plan)
        done, results = set(), {}
        progress(f"run {run_id}: {plan.kind} {plan.from_site} -> {plan.to_site}, "
                 f"{len(plan.steps)} steps")
    t0 = time.monotonic()
    for index, step in enumerate(plan.steps):
        if index in done:
            continue
        if before_step is not None:
            before_step(index, step)
        _one(deployment, plan, run_id, index, step, results, progress, t0)
    journal.ended(run_id, "ok")
    return journal.run(run_id)


def _one(
    deployment: Deployment, plan: Plan, run_id: str, index: int, step: Step,
    results: dict[str, dict[str, Any]], progress: Progress, t0: float,
) -> None:
    journal = deployment.journal
    label = f"{index + 1}/{len(plan.steps)} {step.action}"
    progress(f"[{time.monotonic() - t0:6.2f}s] {label}: {step.title}")
    journal.step_started(run_id, index, step.action)
    if os.environ.get(FREEZE_BEFORE_STEP) == step.action:
        # Drill hook: the site went dark as the step began (journaled, not yet acted on):
        # the process stops as SIGSTOP stops a site's; SIGCONT wakes it where it was.
        # Sent to this thread: sent to the process, the kernel may hand it to another
        # thread, and this one would run on into the step until that one stopped them all.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
    started = time.monotonic()
    # A leader deposed since it journaled the start does nothing of the step, and writes
    # nothing more: the step stays started, for the new leader's resume to do.
    deployment.assert_leading()
    ctx = StepContext(
        deployment, plan, index, step, dict(results), started + step.timeout,
        lambda message: progress(f"          {message}"),
    )
    try:
        result = _run_step(ctx, progress)
    except Exception as exc:
        error = one_line(exc)
        # Refused (StaleToken, nothing written) once the new leader has written.
        journal.step_ended(run_id, index, step.action, "failed", error=error)
        journal.ended(run_id, "failed", f"step {label} failed: {error}")
        if isinstance(exc, StaleToken):
            raise  # deposed: the caller stops acting (a StepFailed would read as "fix, resume")
        raise StepFailed(
            f"step {label} failed after {time.monotonic() - started:.1f}s: {error} "
            f"(run {run_id}; fix the cause and run the same command again to resume)"
        ) from exc
    journal.step_ended(run_id, index, step.action, "ok", result=result)
    if os.environ.get(CRASH_AFTER_STEP) == step.action:
        # Chaos hook: die as a kill -9 would, right after the journal took the step.
        os.kill(os.getpid(), signal.SIGKILL)
    results[step.action] = result
    for warning in result.get("warnings", []):
        progress(f"          warning: {warning}")
    progress(f"[{time.monotonic() - t0:6.2f}s] {label}: ok in {time.monotonic() - started:.2f}s")
