"""The lab as a whole: ``up``, ``down`` and its state, in one directory.

``up`` records every process in ``lab.json`` the moment it starts, so that
whatever happens next (a failed step, Ctrl-C, a killed CLI) ``down`` can
stop it by PID. A failed ``up`` stops what it started before it reports.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from failover.config import CONFIG_FILE_NAME, JOURNAL_FILE_NAME
from failover.exceptions import FailoverError
from failover.processes import ProcessRecord, is_alive, log_tail, stop
from failover.secretfiles import check_trusted_dir
from failover.waiting import WaitTimeout, wait_for
from infra.lab import agents, bind, ec2, etcd, hcloud_api, hcloud_boot, moto, refapp, servers, tls
from infra.lab.config import write_lab_config
from infra.lab.exceptions import LabError, LabNotRunning
from infra.lab.layout import (
    BACKUP_BUCKET,
    EC2_PART,
    HCLOUD_PART,
    HCLOUD_SPARE_PART,
    PRIMARY_SITE,
    ROUTE53_PART,
    SPARE_SITE,
    STANDBY_SITE,
    LabLayout,
)
from infra.lab.paths import LabPaths
from infra.lab.postgres import LabPostgres
from infra.lab.secrets import LabSecrets
from infra.lab.system import RunAs, check_free, named_binary, postgres_bindir

STATE_VERSION = 1
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived while the lab was starting."""


@contextmanager
def _terminations_interrupt() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into an exception, so a killed ``lab up`` still cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise Terminated(f"lab up stopped by signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class LabState:
    """What ``lab.json`` holds: the layout and every process started, in order."""

    layout: LabLayout
    started_at: str
    processes: list[ProcessRecord] = field(default_factory=list)
    complete: bool = False  # every part started and checked

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data."""
        return {
            "version": STATE_VERSION, "layout": self.layout.to_dict(),
            "started_at": self.started_at, "complete": self.complete,
            "processes": [p.to_dict() for p in self.processes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        """The state saved by ``to_dict``."""
        return cls(
            LabLayout.from_dict(data["layout"]), data["started_at"],
            [ProcessRecord.from_dict(p) for p in data["processes"]], bool(data["complete"]),
        )

    def process(self, name: str) -> ProcessRecord | None:
        """The record of one part, e.g. ``postgres@aws``."""
        return next((p for p in self.processes if p.name == name), None)


class Lab:
    """One lab, found by its state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.paths = LabPaths(state_dir.absolute())

    @contextmanager
    def _locked(self, wait: float = 0.0) -> Iterator[None]:
        """Hold the lab's lock; ``wait`` seconds for it when another command has it."""
        # lab.json names the PIDs that `down` stops: a state dir others can swap is refused.
        check_trusted_dir(self.paths.root, "state dir")
        with suppress(FileExistsError):  # there already, or another command made it first
            self.paths.root.mkdir(parents=True)
            self.paths.root.chmod(0o755)  # whatever the umask: the servers' users enter it
        with open(self.paths.lock_file, "w") as lock:

            def take() -> bool:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            try:  # wait_for tries once before it looks at the clock: wait=0 is one try
                wait_for(take, timeout=wait, what=f"the lock on {self.paths.root}", retry_on=())
            except WaitTimeout:
                raise LabError(
                    f"another `failover lab` command is working on {self.paths.root}; "
                    "wait for it to finish"
                ) from None
            yield

    def state(self) -> LabState | None:
        """The recorded state, or None when no lab was started here.

        Its processes are the lab's own (``lab.json``) followed by the ones each
        site's agent started (its ``children.json``), marked with their parent.
        """
        try:
            state = LabState.from_dict(json.loads(self.paths.state_file.read_text()))
            state.processes += self._children(state.processes)
            return state
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(
                f"{self.paths.state_file} is damaged ({exc}); stop any lab processes "
                "listed in it by hand, then remove the state dir"
            ) from exc

    def running_state(self) -> LabState:
        """The state of a lab whose processes all run; raises LabNotRunning otherwise."""
        state = self.state()
        if state is None or not state.complete:
            raise LabNotRunning(
                f"no lab is running in {self.paths.root}; start one: failover lab up"
            )
        dead = [p.name for p in state.processes if not is_alive(p)]
        if dead:
            raise LabNotRunning(
                f"the lab in {self.paths.root} is not whole ({', '.join(dead)} stopped); "
                "restart it: failover lab down && failover lab up"
            )
        return state

    def replace_process(self, record: ProcessRecord, wait: float = 10.0) -> LabState:
        """Record a restarted part in place of its earlier, stopped record (same name).

        For the compute adapter, which restarts a site's database: the new PID
        takes the old one's place, so ``status`` probes it and ``down`` stops it.
        Waits up to ``wait`` seconds for a ``lab`` command that holds the lock.
        """
        with self._locked(wait):
            state = self.state()
            if state is None:
                raise LabNotRunning(f"no lab in {self.paths.root} to record {record.name} in")
            index = next(
                (i for i, p in enumerate(state.processes) if p.name == record.name), None
            )
            if index is None:
                raise LabError(f"the lab in {self.paths.root} has no part {record.name}")
            old = state.processes[index]
            if old != record and is_alive(old):  # never lose track of a live process
                raise LabError(f"{record.name} still runs as pid {old.pid}; stop it first")
            state.processes[index] = record
            self._save(state)
            return state

    def _children(self, records: list[ProcessRecord]) -> list[ProcessRecord]:
        """What the lab's agents started, and the agents (with theirs) that the spare
        site's fake booted, as each recorded them."""
        children = [child for r in records if r.name.startswith("agent@") and r.parent is None
                    for child in agents.children(self.paths, r.name.split("@", 1)[1], r.name)]
        if any(r.name == HCLOUD_SPARE_PART for r in records):
            children += hcloud_boot.processes(self.paths.root, HCLOUD_SPARE_PART)
        return children

    def _save(self, state: LabState) -> None:
        own = replace(state, processes=[p for p in state.processes if p.parent is None])
        tmp = self.paths.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(own.to_dict(), indent=2) + "\n")
        tmp.replace(self.paths.state_file)  # atomic: a reader sees the old or the new

    def up(self, layout: LabLayout, progress: Progress = _quiet) -> tuple[LabState, bool]:
        """Start the lab; returns its state and whether this call started it."""
        with self._locked():
            existing = self.state()
            if existing is not None:
                alive = [p.name for p in existing.processes if is_alive(p)]
                if existing.complete and len(alive) == len(existing.processes):
                    if existing.layout != layout:
                        raise LabError(
                            f"a lab with another layout (subnet {existing.layout.subnet}, DNS "
                            f"port {existing.layout.dns_port}) runs in {self.paths.root}; "
                            "stop it first (failover lab down) or use another --state-dir"
                        )
                    missing = [part for part, _, _ in layout.listeners()
                               if existing.process(part) is None]
                    if missing:  # started by an older version of this tool
                        raise LabError(
                            f"the lab in {self.paths.root} has no {', '.join(missing)}; "
                            "restart it: failover lab down && failover lab up"
                        )
                    return existing, False
                if alive:
                    raise LabError(
                        f"the lab in {self.paths.root} is partly running ({', '.join(alive)}); "
                        "stop it first: failover lab down"
                    )
                self._wipe()  # left over from a lab whose processes are all gone
            state = LabState(layout, datetime.now(UTC).isoformat(timespec="seconds"))
            try:
                with _terminations_interrupt():
                    self._start(state, progress)
            except BaseException as exc:
                progress("lab up failed: stopping what it started")
                self._stop_all(state, _quiet)
                self._wipe()
                if isinstance(exc, FailoverError | KeyboardInterrupt | SystemExit):
                    raise
                raise LabError(
                    f"lab up failed: {type(exc).__name__}: {exc}; logs in {self.paths.logs}"
                ) from exc
            return self.state() or state, True

    def _preflight(self, layout: LabLayout, pg_user: RunAs, dns_user: RunAs) -> None:
        for who, run_as in (("PostgreSQL", pg_user), ("BIND", dns_user)):
            if not run_as.can_enter(self.paths.root):
                raise LabError(
                    f"{who} runs as user {run_as.user!r}, which cannot reach {self.paths.root}; "
                    "choose a --state-dir whose parent folders others may enter (e.g. under /tmp)"
                )
        for part, address, port in layout.listeners():
            check_free(part, address, port, udp=part == "bind9")

    def _start(self, state: LabState, progress: Progress) -> None:
        layout, paths = state.layout, self.paths
        t0 = time.monotonic()

        def say(message: str) -> None:
            progress(f"[{time.monotonic() - t0:5.1f}s] {message}")

        def started(record: ProcessRecord, where: str) -> None:
            state.processes.append(record)
            self._save(state)
            say(f"started {record.name} (pid {record.pid}) on {where}")

        bindir, named = postgres_bindir(), named_binary()
        etcd.binary()  # a missing server is named before anything starts
        pg_user, dns_user = RunAs.service("postgres"), RunAs.service("bind")
        self._preflight(layout, pg_user, dns_user)
        paths.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths.logs.chmod(0o700)
        for old in paths.logs.glob("*.log"):
            old.unlink()
        secrets = LabSecrets.generate()
        # Every site's address: a rebuild brings a database up at spare with the same roles.
        secrets.save(paths, [layout.address(s) for s in layout.sites], layout.postgres_port)
        write_lab_config(layout, paths)
        pg = LabPostgres(layout, paths, secrets, bindir, pg_user)

        token = etcd.cluster_token(paths, state.started_at)  # etcd first: up in half a second
        for site in layout.sites:
            started(etcd.start(layout, paths, site, token), layout.etcd_endpoint(site))
        motos = [*(f"moto@{site}" for site in layout.sites), ROUTE53_PART]
        terminators = [f"tls@{site}" for site in layout.sites]
        for site in layout.sites:
            tls.write_certificate(paths, layout.address(site))
        # moto, the TLS terminators, EC2 and the Hetzner fakes: forked from one parent.
        servers.start(layout, paths, started)
        # EC2's first call costs moto a second or two of its own work, so the account
        # is seeded in a thread beside the databases' start rather than after it.
        # Leaving the block waits for the thread: no seeding outlives a failed start.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-ec2") as beside:
            seeding = beside.submit(self._seed_ec2, state, secrets)
            try:
                pg.initdb(PRIMARY_SITE)
                say(f"initialised postgres@{PRIMARY_SITE} (data checksums on)")
                # Started once by the lab, to make the roles and the standby's copy;
                # from then on the site's agent runs it.
                init = replace(pg.start(PRIMARY_SITE), name=f"postgres-init@{PRIMARY_SITE}")
                started(init, f"{layout.address(PRIMARY_SITE)}:{layout.postgres_port}")
                bind.configure(layout, paths, secrets.tsig, layout.address(PRIMARY_SITE),
                               dns_user)
                started(bind.start(str(named), paths, dns_user),
                        f"{layout.dns_address}:{layout.dns_port}")

                self._await(state, init.name, partial(pg.wait_ready, PRIMARY_SITE))
                pg.bootstrap(PRIMARY_SITE)
                pg.base_backup(STANDBY_SITE, PRIMARY_SITE)
                say(f"base backup of postgres@{PRIMARY_SITE} made for postgres@{STANDBY_SITE}")
                say(f"{init.name} (pid {init.pid}): {stop(init)}")
                state.processes.remove(init)
                self._save(state)
                # The spare's host is made by `failover rebuild`; its agent's config waits.
                agents.write_agent(layout, paths, pg, SPARE_SITE, spare=True)
                for site in (PRIMARY_SITE, STANDBY_SITE):
                    agents.write_agent(layout, paths, pg, site)
                servers.start_agents(layout, paths, (PRIMARY_SITE, STANDBY_SITE), started)
            finally:
                seeding.cancel()  # not begun yet (a failure at once): it never will be
            for part in motos:
                self._await(state, part, partial(moto.wait_ready, layout, part))
            for part in terminators:
                self._await(state, part, partial(tls.wait_ready, layout, part))
            for site in layout.sites:
                moto.create_buckets(layout, secrets, site)
            moto.create_zone(layout, secrets, layout.route53_endpoint,
                             layout.address(PRIMARY_SITE))
            say(f"created buckets {layout.bucket} and {BACKUP_BUCKET} at every site and the "
                f"Route 53 zone {layout.zone} at {ROUTE53_PART}")
            say(f"created the controller's IAM key and instance {seeding.result()} "
                f"({ec2.INSTANCE_NAME}) at {EC2_PART}; IAM enforced")

        for site in layout.sites:
            self._await(state, etcd.part(site), partial(etcd.wait_ready, layout, site))
        say(f"etcd serves at {', '.join(etcd.endpoints(layout))}")
        self._await(state, HCLOUD_PART, partial(hcloud_api.wait_ready, layout, secrets))
        say(f"{HCLOUD_PART} (a fake) serves a project with server {hcloud_api.server_name()}")
        self._await(state, HCLOUD_SPARE_PART,
                    partial(hcloud_api.wait_ready, layout, secrets, part=HCLOUD_SPARE_PART))
        say(f"{HCLOUD_SPARE_PART} (a fake) serves an empty project, for a rebuild")
        self._await(state, "bind9", partial(bind.wait_ready, layout))
        for site in (PRIMARY_SITE, STANDBY_SITE):
            self._await(state, f"agent@{site}", partial(agents.wait_ready, layout, paths, site))
        self._await(state, f"agent@{STANDBY_SITE}",
                    partial(pg.wait_streaming, PRIMARY_SITE, STANDBY_SITE))
        say(f"postgres@{STANDBY_SITE} streams from postgres@{PRIMARY_SITE}")
        for site, role in ((PRIMARY_SITE, "primary"), (STANDBY_SITE, "standby")):
            self._await(state, f"agent@{site}", partial(refapp.wait_ready, layout, site, role))
        state.complete = True
        self._save(state)
        say("lab is up")

    def _seed_ec2(self, state: LabState, secrets: LabSecrets) -> str:
        """Wait for ec2@aws, seed its account and enforce IAM; returns the instance's id."""
        self._await(state, EC2_PART, partial(ec2.wait_ready, state.layout))
        return ec2.seed(state.layout, self.paths, secrets, timeout=10.0)

    def _await(
        self, state: LabState, name: str, wait: Callable[..., None], timeout: float = 30.0
    ) -> None:
        """Wait for a part in short rounds, failing at once when its process died."""
        record = state.process(name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait(timeout=1.0)
                return
            except WaitTimeout as exc:
                if record is not None and not is_alive(record):
                    raise LabError(
                        f"{name} exited while starting: {log_tail(record, 3) or 'no output'} "
                        f"(log: {record.log})"
                    ) from exc
                if time.monotonic() >= deadline:
                    raise

    def down(self, progress: Progress = _quiet) -> list[tuple[str, str]]:
        """Stop every recorded process by PID and remove the lab's data (logs stay)."""
        with self._locked():
            state = self.state()
            if state is None:
                return []
            outcomes = self._stop_all(state, progress)
            self._wipe()
            return outcomes

    def _stop_all(self, state: LabState, progress: Progress) -> list[tuple[str, str]]:
        own = [p for p in state.processes if p.parent is None]
        # An agent stops its children when told to; whatever of them is left after
        # (the agent was killed) is stopped by PID like the rest.
        everything = own + self._children(own)
        outcomes = []
        for record in [*reversed(own), *[p for p in everything if p.parent]]:
            try:
                outcome = stop(record)
            except (OSError, WaitTimeout) as exc:  # e.g. not ours to signal: go on
                outcome = f"NOT stopped: {exc}"
            progress(f"{record.name} (pid {record.pid}): {outcome}")
            outcomes.append((record.name, outcome))
        still = [r.name for r in everything if is_alive(r)]
        if still:
            raise LabError(f"could not stop {', '.join(still)}; see `failover lab status`")
        return outcomes

    def _wipe(self) -> None:
        for path in (self.paths.root / "sites", self.paths.root / "agents", self.paths.dns,
                     self.paths.root / "etcd", self.paths.secrets,
                     self.paths.root / hcloud_boot.SERVERS_DIR):
            shutil.rmtree(path, ignore_errors=True)
        self.paths.state_file.unlink(missing_ok=True)
        (self.paths.root / CONFIG_FILE_NAME).unlink(missing_ok=True)
        # The run journal describes this lab's servers; a new lab starts a new one.
        journal = self.paths.root / JOURNAL_FILE_NAME
        for path in (journal, journal.with_suffix(".lock"),
                     journal.with_name(journal.name + "-wal"),
                     journal.with_name(journal.name + "-shm")):
            path.unlink(missing_ok=True)

