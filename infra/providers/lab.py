"""The compute adapter of the lab: the engine's hands on a site's processes and files.

Every process is reached through the PID recorded in the lab's ``lab.json``
(never by name), and a restarted server's new record replaces the old one
there, so ``lab status`` probes it and ``lab down`` stops it. Rejoining an
old primary (stop, rewind or rebuild, start) is in ``lab_rejoin``.

Every call is idempotent: stopping a stopped server, starting a running one
or rejoining a standby that already streams from the right primary does
nothing and says so. The drills' faults (freeze, thaw, kill, crash, revoked
API credentials) are here too, each with its repair.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from failover import logs
from failover.exceptions import FailoverError, ProviderError
from failover.waiting import WaitTimeout, wait_for
from infra.lab import ec2, hcloud_api, moto, refapp
from infra.lab.exceptions import LabNotRunning
from infra.lab.lab import Lab, LabState
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.postgres import LabPostgres
from infra.lab.processes import ProcessRecord, is_alive, log_tail, send, signal_tree, stop
from infra.lab.secrets import LabSecrets
from infra.lab.system import RunAs
from infra.providers.lab_rejoin import (
    ALREADY,
    PROVIDER,
    following,
    hba_on_disk,
    primary_timeline,
    rewind_or_rebuild,
    wait_following,
)

log = logging.getLogger("failover.compute")

# What a signal to a part's whole process tree does: its log event and its verb.
_SIGNALLED = {signal.SIGSTOP: ("compute.freeze", "froze"),
              signal.SIGCONT: ("compute.thaw", "thawed")}
PART_READY_TIMEOUT = 30.0  # seconds a restarted part (moto, an API, an app) gets to answer


def log_event(event: str, **fields: object) -> None:
    """Log one structured line on the compute adapter's logger."""
    logs.log_event(log, event, **fields)


class LabCompute:
    """Compute adapter for the lab's sites: the engine's hands on processes and files."""

    provider = PROVIDER

    def __init__(self, state_dir: Path) -> None:
        self.lab = Lab(state_dir)

    # -- finding the lab's processes --------------------------------------------

    def _state(self) -> LabState:
        state = self.lab.state()
        if state is None or not state.complete:
            raise LabNotRunning(
                f"no lab is running in {self.lab.paths.root}; start one: failover lab up"
            )
        return state

    def _record(self, state: LabState, site: str) -> ProcessRecord:
        """The site's PostgreSQL server."""
        record = state.process(f"postgres@{site}")
        if record is None:
            known = sorted(p.name.split("@", 1)[1] for p in state.processes
                           if p.name.startswith("postgres@"))
            raise ProviderError(
                f"site {site!r} has no database in the lab in {self.lab.paths.root} "
                f"(sites with one: {', '.join(known)})",
                provider=self.provider, code="unknown-site",
            )
        return record

    def _part(self, name: str) -> ProcessRecord:
        """One recorded part by its name, e.g. ``route53@aws``."""
        record = self._state().process(name)
        if record is None:
            raise ProviderError(f"the lab has no part named {name!r}", provider=self.provider,
                                code="unknown-part")
        return record

    def _site_records(self, site: str) -> list[ProcessRecord]:
        """Every recorded part of a site."""
        records = [p for p in self._state().processes if p.name.endswith(f"@{site}")]
        if not records:
            raise ProviderError(f"the lab has no processes at site {site!r}",
                                provider=self.provider, code="unknown-site")
        return records

    def _postgres(self, state: LabState, record: ProcessRecord) -> LabPostgres:
        # The binaries the lab started this server with, whatever is newest now.
        bindir = Path(record.argv[0]).parent
        return LabPostgres(state.layout, self.lab.paths, LabSecrets.load(self.lab.paths),
                           bindir, RunAs.service("postgres"))

    def database_running(self, site: str) -> bool:
        """Whether the site's recorded PostgreSQL process runs (it may still be starting)."""
        return is_alive(self._record(self._state(), site))

    def process_at(self, address: str, port: int) -> str:
        """The name of the lab part that listens on ``address:port`` (e.g. moto@aws)."""
        layout = self._state().layout
        for part, where, listens in layout.listeners():
            if (where, listens) == (address, port):
                return part
        raise ProviderError(f"no part of the lab in {self.lab.paths.root} listens on "
                            f"{address}:{port}", provider=self.provider, code="unknown-part")

    # -- stop and start ------------------------------------------------------

    def stop_database(self, site: str, timeout: float = 30) -> None:
        """Stop the site's server by PID (fast shutdown, SIGINT; SIGKILL after ``timeout``)."""
        record = self._record(self._state(), site)
        outcome = stop(record, timeout=timeout)  # continues a frozen tree first
        log_event("compute.stop", site=site, pid=record.pid, outcome=outcome)

    def start_database(self, site: str, timeout: float = 30) -> None:
        """Start the site's server if it is not running, record it, wait until it accepts."""
        state = self._state()
        record = self._record(state, site)
        pg = self._postgres(state, record)
        started = not is_alive(record)
        if started:
            record = self._spawn(pg, site)
        self._await(record, partial(pg.wait_ready, site), timeout, "accept connections")
        log_event("compute.start", site=site, pid=record.pid,
                  outcome="started" if started else "already running")

    def _spawn(self, pg: LabPostgres, site: str) -> ProcessRecord:
        record = pg.start(site)
        self._replace(record)
        return record

    def _replace(self, record: ProcessRecord) -> None:
        """Record a restarted part in the lab's state, or stop it when that fails."""
        try:
            self.lab.replace_process(record)
        except BaseException:
            stop(record)  # not recorded, so nothing else would ever stop it
            raise

    def _await(
        self, record: ProcessRecord, wait: Callable[..., None], timeout: float, what: str
    ) -> None:
        """Wait in short rounds, failing at once when the server died."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                return
            except WaitTimeout as exc:
                if not is_alive(record):
                    raise ProviderError(
                        f"{record.name} exited instead of coming up: "
                        f"{log_tail(record, 3) or 'no output'} (log: {record.log})",
                        provider=self.provider, code="exited",
                    ) from exc
                if time.monotonic() >= deadline:
                    raise ProviderError(
                        f"{record.name} did not {what} within {timeout:g}s: {exc}",
                        provider=self.provider, code="TIMEOUT",
                    ) from exc
            except FailoverError:
                raise
            except Exception as exc:  # retry_on let it through: it will not come right by waiting
                raise ProviderError(
                    f"{record.name} did not {what}: {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:200]} (log: {record.log})",
                    provider=self.provider, code="FAILED",
                ) from exc

    # -- rejoin --------------------------------------------------------------

    def rejoin_database(
        self, site: str, primary: str, *, hba: str | None = None, timeout: float = 120
    ) -> str:
        """Make ``site`` a streaming standby of ``primary``; returns how.

        "already a standby of P" when it streams from P already (then only
        ``hba`` is applied), "rewound" when pg_rewind made its files follow
        P's timeline (or found nothing to rewind), "rebuilt (fresh base
        backup)" when pg_rewind could not: the old data dir is moved aside
        and removed only once the new one streams. ``hba``, when given,
        becomes the site's pg_hba.conf (the engine fenced the old primary by
        rewriting it and hands the original back here).
        """
        t0 = time.monotonic()
        deadline = t0 + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        if site == primary:
            raise ProviderError(f"cannot make {site} a standby of itself",
                                provider=self.provider, code="same-site")
        state = self._state()
        record = self._record(state, site)
        self._record(state, primary)
        pg = self._postgres(state, record)
        timeline = primary_timeline(pg, primary)

        if is_alive(record) and following(pg, site, primary, timeline):
            if hba is not None and hba_on_disk(pg, site) != hba:
                pg.write_hba(site, hba)
                send(record, signal.SIGHUP)  # pg_hba.conf is re-read on reload
            log_event("compute.rejoin", site=site, primary=primary, outcome="already",
                      seconds=f"{time.monotonic() - t0:.2f}")
            return ALREADY.format(primary=primary)

        primary_timeline(pg, primary, checkpoint=True)  # so that pg_rewind sees the fork
        self.stop_database(site, timeout=min(30.0, left()))
        how, aside = rewind_or_rebuild(pg, site, primary, left)
        pg.configure_standby(site, primary)
        if hba is not None:
            pg.write_hba(site, hba)
        new = self._spawn(pg, site)
        self._await(new, partial(pg.wait_ready, site), left(), "accept connections")
        self._await(new, partial(wait_following, pg, site, primary, timeline), left(),
                    f"stream from {primary} on its timeline {timeline}")
        if aside is not None:
            shutil.rmtree(aside)  # the new data dir works: the old one can go
        log_event("compute.rejoin", site=site, primary=primary, outcome=how, pid=new.pid,
                  seconds=f"{time.monotonic() - t0:.2f}")
        return how

    # -- faults (drills) -------------------------------------------------------

    def _signal(self, records: list[ProcessRecord], sig: signal.Signals, **where: str) -> str:
        """SIGSTOP or SIGCONT parts and all they forked; returns a sentence."""
        count = sum(signal_tree(r, sig) for r in records)
        event, verb = _SIGNALLED[sig]
        log_event(event, **where, processes=count)
        return f"{verb} {', '.join(r.name for r in records)} ({count} processes)"

    def _kill(self, records: list[ProcessRecord], timeout: float) -> int:
        """SIGKILL parts and all they forked, wait until they are gone; returns how many."""
        count = sum(signal_tree(r, signal.SIGKILL) for r in records)
        wait_for(lambda: not any(is_alive(r) for r in records), timeout=timeout,
                 what=f"{', '.join(r.name for r in records)} to die", retry_on=())
        return count

    def freeze_process(self, name: str) -> str:
        """SIGSTOP one recorded part (and what it forked); returns a sentence."""
        return self._signal([self._part(name)], signal.SIGSTOP, part=name)

    def thaw_process(self, name: str) -> str:
        """SIGCONT what ``freeze_process`` stopped; returns a sentence."""
        return self._signal([self._part(name)], signal.SIGCONT, part=name)

    def freeze_site(self, site: str) -> str:
        """SIGSTOP every recorded process of the site and what it forked; returns a sentence."""
        return self._signal(self._site_records(site), signal.SIGSTOP, site=site)

    def thaw_site(self, site: str) -> str:
        """SIGCONT what ``freeze_site`` stopped; returns a sentence."""
        return self._signal(self._site_records(site), signal.SIGCONT, site=site)

    def crash_database(self, site: str, timeout: float = 10) -> str:
        """SIGKILL the site's PostgreSQL server and every backend: a crash, not a shutdown."""
        record = self._record(self._state(), site)
        count = self._kill([record], timeout)
        log_event("compute.crash", site=site, pid=record.pid, processes=count)
        return f"killed {record.name} (pid {record.pid}, {count} processes)"

    def kill_site(self, site: str, timeout: float = 10) -> str:
        """SIGKILL every recorded process of the site: the provider cut it off."""
        records = self._site_records(site)
        count = self._kill(records, timeout)
        log_event("compute.kill", site=site, processes=count)
        return f"killed {', '.join(r.name for r in records)} ({count} processes)"

    # -- repairs (drills) --------------------------------------------------------

    def restore_site(self, site: str, primary: str, timeout: float = 120) -> list[str]:
        """Bring a site back as a standby of ``primary``; returns what it did, a line each.

        When ``primary`` is the site itself (a drill whose move never
        happened), its database is only started again.

        Whatever of the site no longer runs is started again: its object store
        (empty, as a new account's would be; the bucket is created), its
        Route 53 server when the site has one (empty too; the zone is
        created, answering ``primary``), its provider API (EC2: users, the
        controller's new key and the instance seeded, IAM enforced; the
        fake Hetzner Cloud API: its server, unblocked), its database
        (rejoined: rewound, or rebuilt from a fresh base backup) and its
        app. Parts that run are left alone, so a frozen site is thawed first
        and a crashed database is only rejoined; a revoked key or a blocked
        project of a running API stays so (``restore_api_credentials``).
        """
        state = self._state()
        layout, paths = state.layout, self.lab.paths
        secrets = LabSecrets.load(paths)
        done = []
        self.thaw_site(site)
        if (record := self._restart_moto(state, f"moto@{site}")) is not None:
            moto.create_bucket(layout, secrets, site)
            done.append(f"moto@{site} started (pid {record.pid}), bucket {layout.bucket} created")
        if (record := self._restart_moto(state, f"route53@{site}")) is not None:
            moto.create_zone(layout, secrets, moto.endpoint(layout, record.name),
                             layout.address(primary))
            done.append(f"route53@{site} started (pid {record.pid}), zone {layout.zone} "
                        f"created, answering {primary}")
        done += self._restart_apis(state, site, secrets)
        if site == primary:  # nothing moved: the site comes back as what it was
            self.start_database(site, timeout=timeout)
            done.append(f"postgres@{site}: running")
        else:
            how = self.rejoin_database(site, primary, timeout=timeout)
            done.append(f"postgres@{site}: {how} as a standby of {primary}")
        role = "primary" if site == primary else "standby"
        record = self._restart(state, f"app@{site}", partial(refapp.start, layout, paths, site),
                               partial(refapp.wait_ready, layout, site, role),
                               f"serve as a {role}'s app")
        if record is not None:
            done.append(f"app@{site} started (pid {record.pid})")
        log_event("compute.restore", site=site, primary=primary, done=len(done))
        return done

    def _restart(
        self, state: LabState, part: str, start: Callable[[], ProcessRecord],
        ready: Callable[..., None], what: str,
    ) -> ProcessRecord | None:
        """Start a recorded part again if it died and wait until it does ``what``.

        Returns its new record, or None when it runs (or the lab has no such part).
        """
        old = state.process(part)
        if old is None or is_alive(old):
            return None
        record = start()
        self._replace(record)
        self._await(record, ready, PART_READY_TIMEOUT, what)
        return record

    def _restart_moto(self, state: LabState, part: str) -> ProcessRecord | None:
        """Start a recorded moto part again if it died; returns its new record, if any."""
        return self._restart(state, part, partial(moto.start, state.layout, self.lab.paths, part),
                             partial(moto.wait_ready, state.layout, part), "answer")

    def _restart_apis(self, state: LabState, site: str, secrets: LabSecrets) -> list[str]:
        """Start the site's provider API again if it died, with its account as at ``lab up``."""
        layout, paths, done = state.layout, self.lab.paths, []
        record = self._restart(state, f"ec2@{site}", partial(ec2.start, layout, paths),
                               partial(ec2.wait_ready, layout), "answer")
        if record is not None:
            instance = ec2.seed(layout, paths, secrets)
            done.append(f"{record.name} started (pid {record.pid}), instance {instance} and "
                        "the controller's new key created, IAM enforced")
        record = self._restart(state, f"hcloud@{site}", partial(hcloud_api.start, layout, paths),
                               partial(hcloud_api.wait_ready, layout, secrets), "answer")
        if record is not None:
            done.append(f"{record.name} (fake) started (pid {record.pid}), server "
                        f"{hcloud_api.server_name(site)} in an unblocked project")
        return done

    # -- the provider's API (credentials-revoked) ------------------------------

    def revoke_api_credentials(self, site: str) -> str:
        """Make the site's provider API refuse the controller; returns a line for a timeline.

        EC2 (``ec2@aws``): the controller's access key is deleted, so
        ``DescribeInstances`` fails with AuthFailure. Hetzner (the fake
        ``hcloud@hetzner``): the project is blocked, so every call is
        refused with 403 forbidden. Idempotent.
        """
        return self._on_api(site, "compute.revoke_api", ec2.revoke, hcloud_api.block)

    def restore_api_credentials(self, site: str) -> str:
        """Undo ``revoke_api_credentials``; returns a line for a timeline.

        EC2: a new key for the controller, written to ``secrets/ec2-credentials``
        (the controller reads the file at every look). Hetzner: the project is
        unblocked; its token never changed. Idempotent.
        """
        return self._on_api(site, "compute.restore_api", ec2.restore, hcloud_api.unblock)

    def _on_api(
        self, site: str, event: str, on_ec2: Callable[[LabLayout, LabPaths], str],
        on_hcloud: Callable[[LabLayout, LabSecrets], str],
    ) -> str:
        """Do one thing to the site's provider API, whichever kind it is; returns what it said."""
        state = self._state()
        kind = self._api_kind(state, site)
        if kind == "ec2":
            said = on_ec2(state.layout, self.lab.paths)
        else:
            said = on_hcloud(state.layout, LabSecrets.load(self.lab.paths))
        log_event(event, site=site, api=f"{kind}@{site}")
        return said

    def _api_kind(self, state: LabState, site: str) -> str:
        """The kind of the site's provider API in the lab: ``ec2`` or ``hcloud``."""
        for kind in ("ec2", "hcloud"):
            record = state.process(f"{kind}@{site}")
            if record is not None:
                if not is_alive(record):
                    raise ProviderError(f"{record.name} is not running; restore the site first",
                                        provider=self.provider, code="not-running")
                return kind
        raise ProviderError(f"site {site!r} has no provider API in the lab in "
                            f"{self.lab.paths.root}", provider=self.provider, code="unknown-site")
