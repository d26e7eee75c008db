"""The primary's lease in real etcd, held by the primary's real agent; failsafe when etcd freezes.

A lab of this module's own (127.90) whose agents hold the lease in etcd
(``LabLayout.agent_leases``). The test plays the leading controller: it
writes the decision (``primary = aws``) and, for a promote, withholds and
allows it through the engine's own ``EtcdLeases``. etcd's members and an
agent are frozen with SIGSTOP by PID and thawed with SIGCONT, always, on
the way out; aws's agent is restarted with failsafe off, and back on. Tests
run in file order and each leaves aws holding the lease.
"""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from failover.agent.config import ClusterSpec, dump_agent_config, load_agent_config
from failover.agent.supervisor import read_children
from failover.cluster.etcd import EtcdCluster
from failover.cluster.exceptions import ClusterUnavailable
from failover.cluster.primarylease import DECISION_KEY, HOLDER_KEY, EtcdLeases
from failover.engine.deployment import open_deployment
from failover.exceptions import ProviderError
from failover.processes import ProcessRecord, is_alive, send, stop
from failover.waiting import wait_for
from infra.lab import agents, etcd
from infra.lab.lab import Lab
from infra.lab.layout import APP_DATABASE, APP_USER, LabLayout
from infra.lab.secrets import LabSecrets
from tests.conftest import RunningLab, free_port, private_tmpdir, starts_servers

pytestmark = pytest.mark.lab

SUBNET = "127.90"
TTL = agents.LEASE_TTL
PROBE = "lease_probe"
# What a look may meet while etcd or an agent comes back from a freeze: not yet, not a failure.
COMING_BACK = (ClusterUnavailable, ProviderError)


@pytest.fixture(scope="module")
@starts_servers
def lab() -> Iterator[RunningLab]:
    """A lab of this module's own whose agents hold the lease in etcd; stopped by PID."""
    state_dir = private_tmpdir("failover-test-clusterlease-")
    the_lab = Lab(state_dir)
    layout = LabLayout(subnet=SUBNET, dns_port=free_port(), agent_leases=True)
    try:
        the_lab.up(layout)
        running = RunningLab(the_lab, layout, LabSecrets.load(the_lab.paths))
        with running.endpoint("aws", dbname=APP_DATABASE).connect(timeout=3) as conn:
            conn.execute(f"CREATE TABLE {PROBE} (row text PRIMARY KEY)")
            conn.execute(f"GRANT SELECT, INSERT ON {PROBE} TO {APP_USER}")
        yield running
    finally:
        the_lab.down()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def store(lab: RunningLab) -> EtcdCluster:
    """The lab's etcd, under the deployment's keys, as the controllers reach it."""
    return EtcdCluster(etcd.endpoints(lab.layout), etcd.CLUSTER_NAME, 2.0)


def status(lab: RunningLab, site: str) -> dict[str, Any]:
    """What a site's agent says (its lease and its part in the cluster)."""
    client = agents.client(lab.layout, lab.lab.paths, site)
    try:
        return client.status(timeout=2)
    finally:
        client.close()


def app_writes(lab: RunningLab) -> bool:
    """Whether the app's user can write at aws now (a fence refuses its sessions)."""
    try:
        with lab.endpoint("aws", user=APP_USER, dbname=APP_DATABASE).connect(timeout=2) as conn:
            conn.execute(f"INSERT INTO {PROBE} VALUES (%s)", (uuid.uuid4().hex,))
    except psycopg.OperationalError as exc:
        # Refused by the fence, or a session the fence ended mid-write: nothing written.
        assert any(why in str(exc) for why in ("pg_hba.conf", "rejected", "terminating",
                                               "closed the connection")), exc
        return False
    return True


def holds(lab: RunningLab, store: EtcdCluster) -> bool:
    """Whether aws's agent holds the lease: its own view, and the hold in etcd bound to it."""
    said = status(lab, "aws")
    hold = store.get(HOLDER_KEY)
    return (said["lease"]["state"] == "held" and said["cluster"]["state"] == "held"
            and hold is not None and hold.value == "aws"
            and f"{hold.lease:x}" == said["cluster"]["etcd_lease"])


def standby_never_holds(lab: RunningLab, store: EtcdCluster) -> None:
    said = status(lab, "hetzner")
    assert said["lease"]["state"] == "off" and said["cluster"]["etcd_lease"] is None, said
    hold = store.get(HOLDER_KEY)
    assert hold is None or hold.value == "aws"


@contextmanager
def frozen(lab: RunningLab, *parts: str) -> Iterator[None]:
    """The lab's ``parts`` stopped with SIGSTOP while it lasts, continued whatever happens."""
    state = lab.lab.running_state()
    records: list[ProcessRecord] = []
    try:
        for part in parts:
            record = state.process(part)
            assert record is not None, part
            assert send(record, signal.SIGSTOP)
            records.append(record)
        yield
    finally:
        for record in records:
            send(record, signal.SIGCONT)


ETCD = tuple(etcd.part(site) for site in ("aws", "hetzner", "spare"))


@pytest.fixture(autouse=True)
def aws_holds(lab: RunningLab, store: EtcdCluster) -> Iterator[None]:
    """Each test starts with aws holding the lease and taking writes, and leaves it so."""
    store.put(DECISION_KEY, "aws")  # the leading controller's decision
    wait_for(lambda: holds(lab, store) and app_writes(lab), timeout=20,
             what="aws's agent to hold the lease", retry_on=COMING_BACK)
    yield
    wait_for(lambda: holds(lab, store) and app_writes(lab), timeout=20,
             what="aws's agent to hold the lease again", retry_on=COMING_BACK)
    standby_never_holds(lab, store)


def test_the_primarys_agent_keeps_its_lease_while_etcd_is_up(
        lab: RunningLab, store: EtcdCluster) -> None:
    first = store.get(HOLDER_KEY)
    assert first is not None
    started = time.monotonic()
    while time.monotonic() < started + 2 * TTL:  # two TTLs of renewals, checked throughout
        assert holds(lab, store) and app_writes(lab)
        standby_never_holds(lab, store)
        time.sleep(0.5)
    hold = store.get(HOLDER_KEY)
    assert hold is not None and hold.lease == first.lease  # renewed, never lost
    assert store.ttl(hold.lease) > TTL / 3


def test_with_failsafe_and_every_agent_answering_etcd_frozen_fences_nothing(
        lab: RunningLab, store: EtcdCluster) -> None:
    with frozen(lab, *ETCD):
        wait_for(lambda: status(lab, "aws")["cluster"]["state"] == "failsafe", timeout=TTL,
                 what="aws's agent to keep its lease by the peers' vouches", retry_on=())
        started = time.monotonic()
        while time.monotonic() < started + 2 * TTL:  # past the lease's end, twice over
            said = status(lab, "aws")
            assert said["lease"]["state"] == "held", said
            assert said["cluster"]["state"] == "failsafe", said["cluster"]
            assert app_writes(lab)
            time.sleep(0.5)
        # What kept it: hetzner vouches for aws, each vouch for at most a TTL (a round
        # every third of one, so under load the last may just have run out: wait for one).
        wait_for(lambda: 0 < status(lab, "hetzner")["cluster"]["failsafe"]["vouched"].get(
            "aws", 0) <= TTL, timeout=TTL, what="hetzner's vouch for aws", retry_on=())


def fenced_at_its_leases_end(lab: RunningLab) -> None:
    """With etcd (and the failsafe) out of aws's reach: aws takes writes until its lease's
    end, as its agent tells it once cut off, and is fenced after that end, promptly."""
    before = time.monotonic()
    said = status(lab, "aws")
    after = time.monotonic()
    assert said["lease"]["state"] == "held" and said["fenced"] is False, said
    # Said between the two reads: the end lies between these two instants.
    earliest, latest = before + said["lease"]["expires_in"], after + said["lease"]["expires_in"]
    wait_for(lambda: not app_writes(lab) or time.monotonic() >= earliest, timeout=TTL + 5,
             what="aws's lease's end", retry_on=())
    assert time.monotonic() >= earliest, "aws was fenced before its lease's end"
    wait_for(lambda: not app_writes(lab), timeout=max(latest + 5 - time.monotonic(), 0.5),
             what="aws to fence itself within 5 s of its lease's end", retry_on=())
    said = status(lab, "aws")
    assert said["lease"]["state"] == "lapsed" and said["fenced"] is True, said


def test_one_agent_frozen_too_fences_at_the_leases_end_and_etcd_back_unfences(
        lab: RunningLab, store: EtcdCluster) -> None:
    with frozen(lab, "agent@hetzner"):
        with frozen(lab, *ETCD):
            fenced_at_its_leases_end(lab)
            said = status(lab, "aws")
            assert said["cluster"]["state"] in ("lapsing", "unreachable"), said["cluster"]
        # etcd is back (hetzner's agent still frozen): aws regains the lease, lifts its fence
        wait_for(lambda: holds(lab, store) and app_writes(lab), timeout=2 * TTL + 5,
                 what="aws to regain its lease and take writes", retry_on=COMING_BACK)


def test_a_promote_withholds_the_lease_and_waits_until_the_primary_let_go(
        lab: RunningLab, store: EtcdCluster) -> None:
    leases = open_deployment(None, lab.lab.paths.root).primary_leases
    assert isinstance(leases, EtcdLeases)
    assert (leases.lapsed_by("aws") or 0) > time.time()  # held: its end lies ahead
    granted = store.get(DECISION_KEY)
    assert granted is not None
    log = lab.lab.paths.log("agent@aws")
    seen = log.stat().st_size
    leases.withhold("aws")
    wait_for(lambda: (leases.lapsed_by("aws") or 0) <= time.time(), timeout=TTL + 5,
             what="aws's lease to lapse", retry_on=())
    assert not app_writes(lab)  # it fenced itself before its hold went
    assert store.get(HOLDER_KEY) is None
    with log.open(errors="replace") as lines:
        lines.seek(seen)
        said = [line for line in lines if "agent.cluster_lease" in line]
    assert any("state=released" in line and "revoked" in line for line in said), said
    withheld = status(lab, "hetzner")["cluster"]["failsafe"]["withheld"]
    assert withheld["aws"] >= granted.mod_revision  # hetzner vouches for it no more
    leases.allow("aws")  # the promote's end, here giving it back to aws


def restart_agent(lab: RunningLab, site: str, cluster: ClusterSpec) -> None:
    """Kill a site's agent (its server runs on), rewrite its cluster section, start it again."""
    paths, home = lab.lab.paths, agents.agent_dir(lab.lab.paths, site)
    config = load_agent_config(home / "agent.yaml")
    (home / "agent.yaml").write_text(dump_agent_config(config.model_copy(
        update={"cluster": cluster})))
    old = lab.lab.running_state().process(f"agent@{site}")
    assert old is not None
    left = read_children(home)
    send(old, signal.SIGKILL)
    wait_for(lambda: not is_alive(old), timeout=10, what=f"agent@{site} to die", retry_on=())
    try:
        record = agents.start(lab.layout, paths, site)
        try:
            lab.lab.replace_process(record)
        except BaseException:
            stop(record)
            raise
        agents.wait_ready(lab.layout, paths, site)
    finally:
        now = read_children(home)
        for orphan in left:  # adopted by the new agent, else stopped by PID
            if orphan not in now and is_alive(orphan):
                stop(orphan)


def test_with_failsafe_off_etcd_frozen_fences_at_the_leases_end(
        lab: RunningLab, store: EtcdCluster) -> None:
    spec = agents.cluster_spec(lab.layout, lab.lab.paths, "aws")
    restart_agent(lab, "aws", spec.model_copy(update={"failsafe": False}))
    try:
        # Restarted, it renewed the etcd lease it had noted: held at once, never fenced.
        said = status(lab, "aws")
        assert said["cluster"]["state"] == "held" and said["fenced"] is False, said
        assert said["cluster"]["failsafe"]["on"] is False
        assert holds(lab, store) and app_writes(lab)
        with frozen(lab, *ETCD):
            fenced_at_its_leases_end(lab)
            said = status(lab, "aws")
            assert "failsafe off" in said["cluster"]["said"] or \
                said["cluster"]["state"] == "unreachable", said["cluster"]
        wait_for(lambda: holds(lab, store) and app_writes(lab), timeout=2 * TTL + 5,
                 what="aws to regain its lease and take writes", retry_on=COMING_BACK)
    finally:
        restart_agent(lab, "aws", spec)
