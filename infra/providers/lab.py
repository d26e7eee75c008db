"""The compute adapter of the lab: the engine's hands on a site's processes and files.

SQL can promote a standby but cannot turn the old primary into a standby of
the new one: that takes stopping the server, rewinding its files and
starting it again. Every process is reached through the PID recorded in the
lab's ``lab.json`` (never by name), and a restarted server's new record
replaces the old one there, so ``lab status`` probes it and ``lab down``
stops it.

Every call is idempotent: stopping a stopped server, starting a running one
or rejoining a standby that already streams from the right primary does
nothing and says so.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from failover import logs
from failover.exceptions import ProviderError
from failover.waiting import WaitTimeout, wait_for
from infra.lab import ec2, hcloud_api, moto, refapp
from infra.lab.exceptions import LabError, LabNotRunning
from infra.lab.lab import Lab, LabState
from infra.lab.postgres import LabPostgres
from infra.lab.processes import ProcessRecord, is_alive, log_tail, send, signal_tree, stop
from infra.lab.secrets import LabSecrets
from infra.lab.system import RunAs

log = logging.getLogger("failover.compute")

REWOUND = "rewound"
REBUILT = "rebuilt (fresh base backup)"
ALREADY = "already a standby of {primary}"


def log_event(event: str, **fields: object) -> None:
    """Log one structured line on the compute adapter's logger."""
    logs.log_event(log, event, **fields)


class LabCompute:
    """Compute adapter for the lab's sites: the engine's hands on processes and files."""

    provider = "lab"

    def __init__(self, state_dir: Path) -> None:
        self.lab = Lab(state_dir)

    # -- reading the lab -----------------------------------------------------

    def _state(self) -> LabState:
        state = self.lab.state()
        if state is None or not state.complete:
            raise LabNotRunning(
                f"no lab is running in {self.lab.paths.root}; start one: failover lab up"
            )
        return state

    def _record(self, state: LabState, site: str) -> ProcessRecord:
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

    def _postgres(self, state: LabState, record: ProcessRecord) -> LabPostgres:
        # The binaries the lab started this server with, whatever is newest now.
        bindir = Path(record.argv[0]).parent
        return LabPostgres(state.layout, self.lab.paths, LabSecrets.load(self.lab.paths),
                           bindir, RunAs.service("postgres"))

    def database_running(self, site: str) -> bool:
        """Whether the site's recorded PostgreSQL process runs (it may still be starting)."""
        return is_alive(self._record(self._state(), site))

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
        timeline = self._primary_timeline(pg, primary)

        if is_alive(record) and self._following(pg, site, primary, timeline):
            if hba is not None and self._hba(pg, site) != hba:
                pg.write_hba(site, hba)
                send(record, signal.SIGHUP)  # pg_hba.conf is re-read on reload
            log_event("compute.rejoin", site=site, primary=primary, outcome="already",
                      seconds=f"{time.monotonic() - t0:.2f}")
            return ALREADY.format(primary=primary)

        # pg_rewind reads the source's timeline from its control file, which a
        # freshly promoted server updates only at its next checkpoint: before
        # that it says "no rewind required" of a target that diverged.
        self._primary_timeline(pg, primary, checkpoint=True)
        self.stop_database(site, timeout=min(30.0, left()))
        how, aside = self._rewind_or_rebuild(pg, site, primary, left)
        pg.configure_standby(site, primary)
        if hba is not None:
            pg.write_hba(site, hba)
        new = self._spawn(pg, site)
        self._await(new, partial(pg.wait_ready, site), left(), "accept connections")
        self._await(new, partial(self._wait_following, pg, site, primary, timeline), left(),
                    f"stream from {primary} on its timeline {timeline}")
        if aside is not None:
            shutil.rmtree(aside)  # the new data dir works: the old one can go
        log_event("compute.rejoin", site=site, primary=primary, outcome=how, pid=new.pid,
                  seconds=f"{time.monotonic() - t0:.2f}")
        return how

    def _primary_timeline(self, pg: LabPostgres, primary: str, checkpoint: bool = False) -> int:
        """The timeline ``primary`` writes on; refuses when it is no reachable primary."""
        try:
            with pg.endpoint(primary).connect(timeout=3) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is None or row[0]:
                    raise ProviderError(
                        f"postgres@{primary} is a standby, not a primary; promote it first",
                        provider=self.provider, code="not-primary",
                    )
                if checkpoint:
                    conn.execute("CHECKPOINT")
                wal = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"cannot reach postgres@{primary} to follow it: {exc}",
                provider=self.provider, code="UNREACHABLE",
            ) from exc
        assert wal is not None
        return int(wal[0][:8], 16)  # a WAL file's name starts with its timeline

    def _following(self, pg: LabPostgres, site: str, primary: str, timeline: int) -> bool:
        """Whether ``site`` streams from ``primary`` on the primary's timeline.

        The primary's pg_stat_replication alone is not proof: a standby stuck
        on a timeline that forked off (it cannot follow) reconnects every few
        seconds and shows as "streaming" for a moment each time.
        """
        try:
            with pg.endpoint(site).connect(timeout=1) as conn:
                row = conn.execute(
                    "SELECT status, received_tli, sender_host FROM pg_stat_wal_receiver"
                ).fetchone()
            pg.wait_streaming(primary, site, timeout=0)
        except Exception:  # not reachable, not streaming: not following
            return False
        return row is not None and tuple(row) == (
            "streaming", timeline, pg.layout.address(primary)
        )

    def _wait_following(
        self, pg: LabPostgres, site: str, primary: str, timeline: int, timeout: float
    ) -> None:
        wait_for(lambda: self._following(pg, site, primary, timeline), timeout=timeout,
                 what=f"postgres@{site} to stream from {primary}")

    def _hba(self, pg: LabPostgres, site: str) -> str | None:
        try:
            return (pg.paths.pgdata(site) / "pg_hba.conf").read_text()
        except FileNotFoundError:
            return None

    def _rewind_or_rebuild(
        self, pg: LabPostgres, site: str, primary: str, left: Callable[[], float]
    ) -> tuple[str, Path | None]:
        """pg_rewind, else a fresh base backup; returns how and the old data dir set aside."""
        try:
            said = pg.rewind(site, primary, timeout=left())
        except LabError as exc:
            log_event("compute.rewind", site=site, primary=primary, outcome="failed",
                      error=str(exc).splitlines()[-1])
        else:
            detail = ("no rewind required" if "no rewind required" in said
                      else "crash recovery, rewound" if "crash recovery" in said
                      else "rewound")
            log_event("compute.rewind", site=site, primary=primary, outcome=detail)
            return REWOUND, None

        pgdata = pg.paths.pgdata(site)
        aside: Path | None = None
        if pgdata.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            aside = pgdata.with_name(f"pgdata.before-rebuild-{stamp}")
            pgdata.rename(aside)
        try:
            pg.base_backup(site, primary, timeout=left())
        except BaseException:
            shutil.rmtree(pgdata, ignore_errors=True)  # a partial copy
            if aside is not None:
                aside.rename(pgdata)
            raise
        log_event("compute.rebuild", site=site, primary=primary, aside=aside or "-")
        return REBUILT, aside

    # -- faults and repairs (drills) ---------------------------------------

    def _site_records(self, site: str) -> list[ProcessRecord]:
        records = [p for p in self._state().processes if p.name.endswith(f"@{site}")]
        if not records:
            raise ProviderError(f"the lab has no processes at site {site!r}",
                                provider=self.provider, code="unknown-site")
        return records

    def crash_database(self, site: str, timeout: float = 10) -> str:
        """SIGKILL the site's PostgreSQL server and every backend: a crash, not a shutdown."""
        record = self._record(self._state(), site)
        count = signal_tree(record, signal.SIGKILL)
        wait_for(lambda: not is_alive(record), timeout=timeout, what=f"{record.name} to die")
        log_event("compute.crash", site=site, pid=record.pid, processes=count)
        return f"killed {record.name} (pid {record.pid}, {count} processes)"

    def kill_site(self, site: str, timeout: float = 10) -> str:
        """SIGKILL every recorded process of the site: the provider cut it off."""
        records = self._site_records(site)
        count = sum(signal_tree(r, signal.SIGKILL) for r in records)
        wait_for(lambda: not any(is_alive(r) for r in records), timeout=timeout,
                 what=f"every process of {site} to die")
        log_event("compute.kill", site=site, processes=count)
        return f"killed {', '.join(r.name for r in records)} ({count} processes)"

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
        app_record = state.process(f"app@{site}")
        if app_record is not None and not is_alive(app_record):
            record = refapp.start(layout, paths, site)
            self._replace(record)
            self._await(record, partial(refapp.wait_ready, layout, site, role), 30,
                        f"serve as a {role}'s app")
            done.append(f"app@{site} started (pid {record.pid})")
        log_event("compute.restore", site=site, primary=primary, done=len(done))
        return done

    def _restart_moto(self, state: LabState, part: str) -> ProcessRecord | None:
        """Start a recorded moto part again if it died; returns its new record, if any."""
        old = state.process(part)
        if old is None or is_alive(old):
            return None
        record = moto.start(state.layout, self.lab.paths, part)
        self._replace(record)
        self._await(record, partial(moto.wait_ready, state.layout, part), 30, "answer")
        return record

    def _restart_apis(self, state: LabState, site: str, secrets: LabSecrets) -> list[str]:
        """Start the site's provider API again if it died, with its account as at ``lab up``."""
        layout, paths, done = state.layout, self.lab.paths, []
        old = state.process(f"ec2@{site}")
        if old is not None and not is_alive(old):
            record = ec2.start(layout, paths)
            self._replace(record)
            self._await(record, partial(ec2.wait_ready, layout), 30, "answer")
            instance = ec2.seed(layout, paths, secrets)
            done.append(f"{record.name} started (pid {record.pid}), instance {instance} and "
                        "the controller's new key created, IAM enforced")
        old = state.process(f"hcloud@{site}")
        if old is not None and not is_alive(old):
            record = hcloud_api.start(layout, paths)
            self._replace(record)
            self._await(record, partial(hcloud_api.wait_ready, layout, secrets), 30, "answer")
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
        state = self._state()
        kind = self._api_kind(state, site)
        secrets = LabSecrets.load(self.lab.paths)
        if kind == "ec2":
            said = ec2.revoke(state.layout, self.lab.paths)
        else:
            said = hcloud_api.block(state.layout, secrets)
        log_event("compute.revoke_api", site=site, api=f"{kind}@{site}")
        return said

    def restore_api_credentials(self, site: str) -> str:
        """Undo ``revoke_api_credentials``; returns a line for a timeline.

        EC2: a new key for the controller, written to ``secrets/ec2-credentials``
        (the controller reads the file at every look). Hetzner: the project is
        unblocked; its token never changed. Idempotent.
        """
        state = self._state()
        kind = self._api_kind(state, site)
        secrets = LabSecrets.load(self.lab.paths)
        if kind == "ec2":
            said = ec2.restore(state.layout, self.lab.paths)
        else:
            said = hcloud_api.unblock(state.layout, secrets)
        log_event("compute.restore_api", site=site, api=f"{kind}@{site}")
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

    def process_at(self, address: str, port: int) -> str:
        """The name of the lab part that listens on ``address:port`` (e.g. moto@aws)."""
        layout = self._state().layout
        for part, where, listens in layout.listeners():
            if (where, listens) == (address, port):
                return part
        raise ProviderError(f"no part of the lab in {self.lab.paths.root} listens on "
                            f"{address}:{port}", provider=self.provider, code="unknown-part")

    def _part(self, name: str) -> ProcessRecord:
        record = self._state().process(name)
        if record is None:
            raise ProviderError(f"the lab has no part named {name!r}", provider=self.provider,
                                code="unknown-part")
        return record

    def freeze_process(self, name: str) -> str:
        """SIGSTOP one recorded part (and what it forked); returns a sentence."""
        record = self._part(name)
        count = signal_tree(record, signal.SIGSTOP)
        log_event("compute.freeze", part=name, processes=count)
        return f"froze {name} ({count} processes)"

    def thaw_process(self, name: str) -> str:
        """SIGCONT what ``freeze_process`` stopped; returns a sentence."""
        record = self._part(name)
        count = signal_tree(record, signal.SIGCONT)
        log_event("compute.thaw", part=name, processes=count)
        return f"thawed {name} ({count} processes)"

    def freeze_site(self, site: str) -> str:
        """SIGSTOP every recorded process of the site and what it forked; returns a sentence."""
        records = self._site_records(site)
        count = sum(signal_tree(r, signal.SIGSTOP) for r in records)
        log_event("compute.freeze", site=site, processes=count)
        return f"froze {', '.join(r.name for r in records)} ({count} processes)"

    def thaw_site(self, site: str) -> str:
        """SIGCONT what ``freeze_site`` stopped; returns a sentence."""
        records = self._site_records(site)
        count = sum(signal_tree(r, signal.SIGCONT) for r in records)
        log_event("compute.thaw", site=site, processes=count)
        return f"thawed {', '.join(r.name for r in records)} ({count} processes)"
