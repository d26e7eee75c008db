"""The controller a drill runs: a real ``failover watch`` process beside the workload.

The drill starts it before the baseline (so its probes have a history when
the fault comes), delivers notices to it the way a provider would (a signed
webhook), and then only watches: what the controller decided and when, from
``/v1/status``, and the runs it made, from the journal. It is stopped by its
PID before the drill fails back, so it never fights the fail back.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import httpx

from failover.engine.deployment import Deployment
from failover.engine.journal import RunRecord
from failover.exceptions import FailoverError
from failover.processes import ProcessRecord, is_alive, log_tail, spawn, stop
from failover.waiting import WaitTimeout, wait_for
from failover.watch.signals import Notice
from failover.watch.webhook import controller_url, load_secret, post_signal

ACTING = ("start", "prepare", "propose", "resume")  # decisions that ask for something


class ControllerFailed(FailoverError):
    """The drill's controller could not start, or stopped answering."""

    exit_code = 2


class DrillController:
    """One ``failover watch`` process, started and stopped by the drill."""

    def __init__(self, deployment: Deployment, log: Path) -> None:
        self.deployment = deployment
        self.log = log
        self.url = controller_url(deployment.config.watch.listen)
        self.record: ProcessRecord | None = None

    def start(self, timeout: float = 30.0, *, args: tuple[str, ...] = (),
              env: Mapping[str, str] | None = None, group: int | None = None) -> str:
        """Start the controller and wait until its API answers; a line for the timeline.

        ``args`` are more options for ``failover watch`` (e.g. ``--mode approve``);
        ``env`` more environment (tests set the engine's chaos hook there);
        ``group`` a gid to run it with (root only: a partition cuts that group off).
        """
        argv = [sys.executable, "-m", "failover", "watch", "--config", self.deployment.source,
                *args]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.record = spawn("watch", argv, log=self.log, group=group,
                            env=None if env is None else {**os.environ, **env})
        record = self.record

        def answers() -> bool:
            if not is_alive(record):
                raise ControllerFailed(f"failover watch exited while starting: "
                                       f"{log_tail(record, 3) or 'no output'} (log: {self.log})")
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200

        try:
            # Refused or unanswered while it starts: not yet. It exiting is hopeless.
            wait_for(answers, timeout=timeout, what=f"failover watch at {self.url}",
                     retry_on=httpx.TransportError)
        except WaitTimeout as exc:
            self.stop()
            raise ControllerFailed(f"{exc} (log: {self.log})") from exc
        return f"failover watch (pid {record.pid}) answers at {self.url}"

    def stop(self, timeout: float = 15.0) -> str:
        """Stop the controller by its PID (SIGKILL after ``timeout``); a line for the timeline."""
        if self.record is None:
            return "failover watch was not started"
        outcome = stop(self.record, timeout)
        pid, self.record = self.record.pid, None
        return f"failover watch (pid {pid}): {outcome}"

    def status(self) -> dict[str, Any]:
        """The controller's ``/v1/status``."""
        try:
            response = httpx.get(f"{self.url}/v1/status", timeout=5.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ControllerFailed(f"failover watch at {self.url} did not answer: {exc}") from exc
        data: dict[str, Any] = response.json()
        return data

    def signal(self, notice: Notice) -> dict[str, Any]:
        """Deliver a notice by the signed webhook, as a provider's system would."""
        secret = load_secret(self.deployment.config.watch)
        try:
            response = post_signal(self.url, secret, notice, 5.0)
        except httpx.HTTPError as exc:
            raise ControllerFailed(f"failover watch at {self.url} did not answer: {exc}") from exc
        if response.status_code != 202:
            raise ControllerFailed(f"failover watch refused the notice: HTTP "
                                   f"{response.status_code} {response.text[:200]}")
        answer: dict[str, Any] = response.json()
        return answer

    def first_decision(self, after: float) -> dict[str, Any] | None:
        """The first decision that asked for something at or after ``after``."""
        decisions: list[dict[str, Any]] = self.status()["decisions"]
        return next((d for d in decisions if d["at"] >= after and d["action"] in ACTING), None)

    def await_run(self, after: float, kinds: Collection[str], timeout: float,
                  ) -> RunRecord | None:
        """Wait until a run of one of ``kinds``, begun after ``after``, has ended well.

        A run that failed is waited on too: the controller tries it again. When
        ``timeout`` passes, the newest such run (ended or not), or None.
        """
        journal = self.deployment.journal

        def newest() -> RunRecord | None:
            runs = [r for r in journal.runs(limit=10)
                    if r.created >= after and r.plan.kind in kinds]
            return max(runs, key=lambda r: r.created, default=None)

        def done() -> bool:
            if self.record is not None and not is_alive(self.record):
                raise ControllerFailed(f"failover watch died: {log_tail(self.record, 3)} "
                                       f"(log: {self.log})")
            run = newest()
            return run is not None and run.outcome == "ok"

        # "Not yet" is only a run not yet ended well; a journal that cannot be read
        # or a controller that died will not get better by waiting.
        with contextlib.suppress(WaitTimeout):  # then the newest run says how far it got
            wait_for(done, timeout=timeout, interval=0.2,
                     what=f"the controller's {'/'.join(kinds)}", retry_on=())
        return newest()
