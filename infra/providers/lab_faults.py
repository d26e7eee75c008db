"""The lab's fault injector: what a drill does to a site, and how it is repaired.

Faults: freeze and thaw a site or one part (SIGSTOP/SIGCONT of the whole
process tree), kill a site (SIGKILL, as a provider cutting it off), crash its
database (through its agent: SIGKILL, and it stays down), revoke and restore
the provider API's credentials, cut a site off from the controller (nftables,
``infra.lab.partition``). The repair, ``restore_site``, starts again what no
longer runs and has the site's agent rejoin it as a standby.

Every process is reached through the PID recorded in the lab's ``lab.json``
or an agent's ``children.json`` (never by name); a part started again
replaces its old record. The engine itself never comes here: it reaches
hosts through their agents only.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from failover import logs
from failover.agent.client import AgentClient
from failover.config import CONFIG_FILE_NAME, SpareConfig, load_config
from failover.engine.rebuild import host_of
from failover.exceptions import FailoverError, ProviderError
from failover.processes import ProcessRecord, is_alive, log_tail, signal_tree, stop
from failover.waiting import WaitTimeout, wait_for
from infra.lab import agents, ec2, etcd, hcloud_api, moto, partition, refapp, tls
from infra.lab.exceptions import LabNotRunning
from infra.lab.lab import Lab, LabState
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets

log = logging.getLogger("failover.faults")
PROVIDER = "lab"

# What a signal to a part's whole process tree does: its log event and its verb.
_SIGNALLED = {signal.SIGSTOP: ("faults.freeze", "froze"),
              signal.SIGCONT: ("faults.thaw", "thawed")}
PART_READY_TIMEOUT = 30.0  # seconds a restarted part (moto, an API, an app) gets to answer


def log_event(event: str, **fields: object) -> None:
    """Log one structured line on the compute adapter's logger."""
    logs.log_event(log, event, **fields)


class LabFaults:
    """The drill's hands on the lab's sites: faults and their repair."""

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

    def _agent(self, state: LabState, site: str) -> AgentClient:
        """A client of the site's agent (which runs its database and app)."""
        if state.process(f"agent@{site}") is None:
            known = sorted(p.name.split("@", 1)[1] for p in state.processes
                           if p.name.startswith("agent@"))
            raise ProviderError(
                f"site {site!r} has no agent in the lab in {self.lab.paths.root} "
                f"(sites with one: {', '.join(known)})",
                provider=self.provider, code="unknown-site",
            )
        return agents.client(state.layout, self.lab.paths, site)

    def _part(self, name: str) -> ProcessRecord:
        """One recorded part by its name, e.g. ``route53@aws``."""
        record = self._state().process(name)
        if record is None:
            raise ProviderError(f"the lab has no part named {name!r}", provider=self.provider,
                                code="unknown-part")
        return record

    def _site_records(self, site: str) -> list[ProcessRecord]:
        """Every part of a site the lab started (an agent's tree holds its children)."""
        records = [p for p in self._state().processes
                   if p.name.endswith(f"@{site}") and p.parent is None]
        if not records:
            raise ProviderError(f"the lab has no processes at site {site!r}",
                                provider=self.provider, code="unknown-site")
        return records

    def process_at(self, address: str, port: int) -> str:
        """The name of the lab part that listens on ``address:port`` (e.g. moto@aws)."""
        layout = self._state().layout
        for part, where, listens in layout.listeners():
            if (where, listens) == (address, port):
                return part
        raise ProviderError(f"no part of the lab in {self.lab.paths.root} listens on "
                            f"{address}:{port}", provider=self.provider, code="unknown-part")

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

    def kill_process(self, name: str, timeout: float = 10) -> str:
        """SIGKILL one recorded part (and what it forked), e.g. ``etcd@aws``; a sentence."""
        count = self._kill([self._part(name)], timeout)
        log_event("faults.kill", part=name, processes=count)
        return f"killed {name} ({count} processes)"

    def freeze_site(self, site: str) -> str:
        """SIGSTOP every recorded process of the site and what it forked; returns a sentence."""
        return self._signal(self._site_records(site), signal.SIGSTOP, site=site)

    def thaw_site(self, site: str) -> str:
        """SIGCONT what ``freeze_site`` stopped; returns a sentence."""
        return self._signal(self._site_records(site), signal.SIGCONT, site=site)

    def crash_database(self, site: str, timeout: float = 10) -> str:
        """SIGKILL the site's PostgreSQL server and every backend, and keep it down.

        Through the site's agent (``stop mode=kill``): left to itself the agent
        would start a crashed server again at once; this fault is a server that
        does not come back (a lost disk), so that the controller has to move.
        """
        agent = self._agent(self._state(), site)
        try:
            said = agent.stop_database(mode="kill", timeout=timeout)
        finally:
            agent.close()
        log_event("faults.crash", site=site, outcome=said.get("outcome"))
        return f"killed postgres@{site}: {said.get('outcome')}; its agent keeps it down"

    def kill_site(self, site: str, timeout: float = 10) -> str:
        """SIGKILL every recorded process of the site: the provider cut it off."""
        records = self._site_records(site)
        count = self._kill(records, timeout)
        log_event("faults.kill", site=site, processes=count)
        return f"killed {', '.join(r.name for r in records)} ({count} processes)"

    def cut_off(self, site: str) -> str:
        """Cut the whole site off from the controller and its vantage points (nftables).

        Everything the controller's process opens to the site's address is
        dropped (the drill runs it with ``partition.CONTROLLER_GID``); the
        workload, the site's own parts and the other site still reach it.
        """
        layout = self._state().layout
        # The site's own hosts: database, app, agent. The provider APIs and object store
        # the lab serves from the same address stay reachable (a real provider's API
        # and Route 53 are not behind the site's network).
        ports = (layout.postgres_port, layout.app_port, layout.agent_port)
        said = partition.cut_off(layout.address(site), partition.CONTROLLER_GID, site,
                                 ports=ports)
        log_event("faults.cut_off", site=site)
        return said

    def controller_group(self) -> int | None:
        """``partition.CONTROLLER_GID`` as root (nftables needs it), else None."""
        return partition.CONTROLLER_GID if os.geteuid() == 0 else None

    def heal(self, site: str) -> str:
        """Undo ``cut_off``."""
        said = partition.heal(site)
        log_event("faults.heal", site=site)
        return said

    # -- repairs (drills) --------------------------------------------------------

    def restore_site(self, site: str, primary: str, timeout: float = 120) -> list[str]:
        """Bring a site back as a standby of ``primary``; returns what it did, a line each.

        When ``primary`` is the site itself (a drill whose move never
        happened), its database is only started again.

        Whatever of the site no longer runs is started again: its etcd member
        (over its data: it rejoins the cluster), its object store
        (empty, as a new account's would be; the buckets are created) and the
        TLS terminator in front of it, its
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
        token = etcd.cluster_token(paths, state.started_at)  # ignored: its data dir is there
        record = self._restart(state, etcd.part(site), partial(etcd.start, layout, paths, site,
                                                                token),
                               partial(etcd.wait_ready, layout, site), "serve")
        if record is not None:
            done.append(f"{record.name} started (pid {record.pid}), back in the etcd cluster")
        if (record := self._restart_moto(state, f"moto@{site}")) is not None:
            buckets = moto.create_buckets(layout, secrets, site)
            done.append(f"moto@{site} started (pid {record.pid}), buckets {', '.join(buckets)} "
                        "created")
        terminator = f"tls@{site}"
        record = self._restart(state, terminator, partial(tls.start, layout, paths, terminator),
                               partial(tls.wait_ready, layout, terminator), "answer TLS")
        if record is not None:
            done.append(f"{terminator} started (pid {record.pid}) in front of moto@{site}")
        if (record := self._restart_moto(state, f"route53@{site}")) is not None:
            moto.create_zone(layout, secrets, moto.endpoint(layout, record.name),
                             layout.address(primary))
            done.append(f"route53@{site} started (pid {record.pid}), zone {layout.zone} "
                        f"created, answering {primary}")
        done += self._restart_apis(state, site, secrets)
        record = self._restart(state, f"agent@{site}", partial(agents.start, layout, paths, site),
                               partial(agents.wait_ready, layout, paths, site, database=False),
                               "answer")
        if record is not None:
            done.append(f"agent@{site} started (pid {record.pid})")
        agent = self._agent(state, site)
        try:
            if site == primary:  # nothing moved: the site comes back as what it was
                agent.start_database(timeout=timeout)
                done.append(f"postgres@{site}: running")
            else:
                how = agent.run("rejoin", {"primary_host": layout.address(primary),
                                           "primary_port": layout.postgres_port,
                                           "timeout": timeout}, timeout=timeout + 10)["how"]
                done.append(f"postgres@{site}: {how}" if how.startswith("already") else
                            f"postgres@{site}: {how} as a standby of {primary}")
            said = agent.start_app()
        finally:
            agent.close()
        role = "primary" if site == primary else "standby"
        refapp.wait_ready(layout, site, role, timeout=PART_READY_TIMEOUT)
        done.append(f"app@{site} serves as a {role}'s app (pid {said.get('pid')})")
        log_event("faults.restore", site=site, primary=primary, done=len(done))
        return done

    def decommission(self, site: str, timeout: float = 60) -> str:
        """Delete a rebuilt spare's server through its provider's API, then wipe its disks.

        The Hetzner fake stops the agent it booted, which stops its children;
        their PIDs are waited for before the data, the agent's state and
        pgBackRest's spool are removed. The primary IP stays reserved, and the
        spare's object store keeps its objects (it is the backup store too).
        """
        paths = self.lab.paths
        config = load_config(paths.root / CONFIG_FILE_NAME)
        spare = config.spares.get(site) or config.site(site)
        if not isinstance(spare, SpareConfig):
            raise FailoverError(f"{site} is no spare: only a rebuilt spare is decommissioned")
        children = agents.children(paths, site, f"agent@{site}")
        deleted = host_of(spare, site).destroy_server()
        wait_for(lambda: not any(is_alive(r) for r in children), timeout=timeout,
                 what=f"{site}'s processes to end", retry_on=())
        for path in (paths.site(site), agents.agent_dir(paths, site),
                     paths.root / "pgbackrest" / site):
            shutil.rmtree(path, ignore_errors=True)
        log_event("faults.decommission", site=site, server_deleted=deleted)
        return (f"{site}'s server {'deleted' if deleted else 'was gone'}; its data, agent "
                "state and spool removed")

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
        part = f"hcloud@{site}"
        record = self._restart(state, part, partial(hcloud_api.start, layout, paths, part),
                               partial(hcloud_api.wait_ready, layout, secrets, part=part),
                               "answer")
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
        return self._on_api(site, "faults.revoke_api", ec2.revoke, hcloud_api.block)

    def restore_api_credentials(self, site: str) -> str:
        """Undo ``revoke_api_credentials``; returns a line for a timeline.

        EC2: a new key for the controller, written to ``secrets/ec2-credentials``
        (the controller reads the file at every look). Hetzner: the project is
        unblocked; its token never changed. Idempotent.
        """
        return self._on_api(site, "faults.restore_api", ec2.restore, hcloud_api.unblock)

    def _on_api(
        self, site: str, event: str, on_ec2: Callable[[LabLayout, LabPaths], str],
        on_hcloud: Callable[..., str],
    ) -> str:
        """Do one thing to the site's provider API, whichever kind it is; returns what it said."""
        state = self._state()
        kind = self._api_kind(state, site)
        if kind == "ec2":
            said = on_ec2(state.layout, self.lab.paths)
        else:
            said = on_hcloud(state.layout, LabSecrets.load(self.lab.paths),
                             part=f"hcloud@{site}")
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
