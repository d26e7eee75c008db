"""Shared fixtures: the labs tests share, and the guard that keeps the unit layer serverless.

Two labs serve most modules: the session's (``lab``: the primary stays at aws,
tests touch only fresh names and rows) and ``moves_lab``, shared by the
modules that move the primary and each leave it whole at aws again. A module
that breaks its lab on purpose gets a lab of its own from ``own_lab``. Every
lab is stopped by PID at the end even when tests fail; ``lab down`` itself is
tested by a lab of its own (tests/infra/lab).

``pytest -m "not lab"`` is the unit layer: it starts no server. That is
enforced, not hoped for: see "The unit layer starts no server" below.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest

from failover.data.postgres import PgEndpoint
from infra.lab.lab import Lab
from infra.lab.layout import LabLayout
from infra.lab.secrets import LabSecrets, pgpass_file

# Far from the default lab (127.0.x) so that tests never touch a user's lab. `make test`
# runs two pytest workers (pytest-xdist, a file at a time; a third can be given): each
# starts the shared labs its files need, on subnets of its own (the modules' own labs
# have theirs).
WORKER_SUBNETS = {"gw0": ("127.77", "127.66", "127.67"), "gw1": ("127.79", "127.68", "127.69"),
                  "gw2": ("127.74", "127.75", "127.76")}
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
if _WORKER not in WORKER_SUBNETS:
    raise pytest.UsageError(f"pytest worker {_WORKER}: the labs have subnets for "
                            f"{len(WORKER_SUBNETS)} workers (pytest -n {len(WORKER_SUBNETS)})")
_LAB, _MOVES, _DRILLS = WORKER_SUBNETS[_WORKER]
TEST_SUBNET = os.environ.get("FAILOVER_TEST_SUBNET", _LAB)
MOVES_SUBNET = os.environ.get("FAILOVER_MOVES_TEST_SUBNET", _MOVES)
DRILL_SUBNET = os.environ.get("FAILOVER_DRILL_TEST_SUBNET", _DRILLS)


def free_port() -> int:
    """A port that is free on 127.0.0.1 for both TCP and UDP right now."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def private_tmpdir(prefix: str) -> Path:
    """A temp dir that the postgres and bind users can enter (tests run as root in CI)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class RunningLab:
    """A started lab and the ways tests reach it."""

    lab: Lab
    layout: LabLayout
    secrets: LabSecrets

    def resolve(self, name: str | None = None) -> list[str]:
        """Ask the lab's authoritative server for the app's A record."""
        query = dns.message.make_query(name or self.layout.app_name, "A")
        response = dns.query.udp(
            query, self.layout.dns_address, port=self.layout.dns_port, timeout=2
        )
        return sorted(
            r.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A
            for r in rrset
        )

    def client_via_dns(self) -> httpx.Client:
        """An HTTP client connected to whatever the app's name resolves to."""
        addresses = self.resolve()
        assert addresses, f"{self.layout.app_name} does not resolve"
        return httpx.Client(
            base_url=f"http://{addresses[0]}:{self.layout.app_port}",
            headers={"Host": self.layout.app_name.rstrip(".")},
            timeout=10,
        )

    def log_tails(self, *parts: str, lines: int = 40) -> str:
        """The last lines of the lab's logs of ``parts`` (e.g. ``postgres@aws``), for a failure."""
        tails = []
        for part in parts:
            path = self.lab.paths.log(part)
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            tails.append(f"--- {part} ({path})\n" + "\n".join(text))
        return "\n".join(tails)

    def endpoint(self, site: str, user: str = "postgres", dbname: str = "postgres") -> PgEndpoint:
        """A site's PostgreSQL server as ``user`` (password from the lab's pgpass)."""
        return PgEndpoint(self.layout.address(site), self.layout.postgres_port, user, dbname,
                          passfile=str(pgpass_file(self.lab.paths)))

    def hba_file(self, site: str) -> Path:
        """A site's pg_hba.conf (tests run as root and may read it directly)."""
        return self.lab.paths.pgdata(site) / "pg_hba.conf"

    def client(self, site: str) -> httpx.Client:
        """An HTTP client for one site's app, by address."""
        return httpx.Client(base_url=self.layout.app_url(site), timeout=10)


@contextmanager
def running_lab(subnet: str, prefix: str = "failover-test-lab-",
                agent_leases: bool = True) -> Iterator[RunningLab]:
    """A lab of its own on ``subnet``, stopped by PID on the way out whatever happened
    (``agent_leases``: the agents hold the primary's lease in etcd, as the lab's default)."""
    state_dir = private_tmpdir(prefix)
    the_lab = Lab(state_dir)
    layout = LabLayout(subnet=subnet, dns_port=free_port(), agent_leases=agent_leases)
    try:
        the_lab.up(layout)
        yield RunningLab(the_lab, layout, LabSecrets.load(the_lab.paths))
    finally:
        the_lab.down()
        shutil.rmtree(state_dir, ignore_errors=True)


# -- The unit layer starts no server -------------------------------------------------
#
# Two guards, because a forgotten marker is silent otherwise:
#
# 1. At collection, before any test runs: a test that asks for a fixture marked
#    with @starts_servers (directly or through other fixtures) must carry the lab
#    marker, or the whole run stops naming it. This is what keeps the lab and
#    dovecot fixtures out of `-m "not lab"` even when a test module forgets.
# 2. While a test without the marker is set up and runs, starting a server raises:
#    a lab (Lab.up), an in-process uvicorn, or a process of a server program
#    (postgres, named, dovecot, etcd, moto, uvicorn, the app, the controller), seen in
#    Popen's argv at its lowest level so that subprocess.run, spawn and asyncio's
#    subprocesses are all caught. This catches servers a fixture name cannot show:
#    a module's own fixture, or a server started inside a test.
# A test's own in-process fakes (http.server, asyncio servers on loopback) are not
# servers here: they are part of the test, start in microseconds and need nothing
# installed. Teardown is not guarded: stopping a lab is always allowed.

SERVER_PROGRAMS = frozenset({"postgres", "pg_ctl", "named", "dovecot", "moto_server",
                             "uvicorn", "etcd"})
SERVER_MODULES = frozenset({"moto.server", "infra.lab.moto_server", "uvicorn", "infra.refapp",
                            "infra.lab.hcloud_fake", "infra.lab.tls_terminator"})
SERVER_COMMANDS = (("lab", "up"), ("watch",))  # of the failover CLI: a lab, the controller
STARTS_SERVERS = "_starts_servers"


def starts_servers(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a fixture's function as starting servers: the tests using it must be marked lab."""
    # An attribute, not a registry: pytest loads this file as `conftest` while test
    # modules import it as `tests.conftest`, two module objects with two registries.
    setattr(function, STARTS_SERVERS, True)
    return function


def _argv(args: Any) -> list[str]:
    if isinstance(args, str | bytes):
        return shlex.split(os.fsdecode(args))
    if isinstance(args, os.PathLike):
        return [os.fsdecode(args)]
    return [os.fsdecode(a) for a in args]


def server_in(argv: Sequence[str]) -> str | None:
    """The server a command line would start, or None."""
    if not argv:
        return None
    program = os.path.basename(argv[0])
    if program in SERVER_PROGRAMS:
        return program
    rest = list(argv[1:])
    if "-m" in rest[:-1]:
        module = rest[rest.index("-m") + 1]
        if module in SERVER_MODULES:
            return module
        program, rest = module, rest[rest.index("-m") + 2:]
    if program == "failover":
        words = [w for w in rest if not w.startswith("-")]
        for command in SERVER_COMMANDS:
            if tuple(words[:len(command)]) == command:
                return "failover " + " ".join(command)
    return None


class ServerInUnitTest(AssertionError):
    """A test without the lab marker tried to start a server."""


def _refuse(what: str) -> ServerInUnitTest:
    return ServerInUnitTest(f"{what}, in a test without the lab marker: mark it "
                            "@pytest.mark.lab (pytest -m 'not lab' must start no server)")


@contextmanager
def _no_servers() -> Iterator[None]:
    """While it lasts, starting a lab, a server process or an in-process uvicorn raises."""
    import uvicorn  # here: the unit layer need not pay for it unless a test runs

    execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> Any:
        server = server_in(_argv(args))
        if server is not None:
            raise _refuse(f"starting {server} ({shlex.join(_argv(args))[:120]})")
        return execute(self, args, *rest, **kwargs)

    def no_lab(*args: Any, **kwargs: Any) -> Any:
        raise _refuse("starting a lab")

    def no_uvicorn(*args: Any, **kwargs: Any) -> None:
        raise _refuse("starting uvicorn")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "_execute_child", guarded)
        patch.setattr(Lab, "up", no_lab)
        patch.setattr(uvicorn.Server, "__init__", no_uvicorn)
        yield


def _unit(item: pytest.Item) -> bool:
    return item.get_closest_marker("lab") is None


def _server_fixtures(item: pytest.Item) -> list[str]:
    # pytest keeps a test's fixture closure, with the definitions it will use, on
    # the item; there is no public accessor for the definitions.
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return sorted(name for name, defs in info.name2fixturedefs.items()
                  if defs and getattr(defs[-1].func, STARTS_SERVERS, False))


@pytest.hookimpl(tryfirst=True)  # before -m deselects: every collected test is checked
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Stop the run if a test that uses a server fixture is not marked lab."""
    unmarked = [f"  {item.nodeid} uses {', '.join(fixtures)}" for item in items
                if _unit(item) and (fixtures := _server_fixtures(item))]
    if unmarked:
        raise pytest.UsageError(
            "tests that start servers must be marked @pytest.mark.lab (pytest -m 'not lab' "
            "must start none):\n" + "\n".join(unmarked))


def _guarded(item: pytest.Item) -> AbstractContextManager[None]:
    return _no_servers() if _unit(item) else nullcontext()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Set up a test without the lab marker with servers refused."""
    with _guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run a test without the lab marker with servers refused."""
    with _guarded(item):
        return (yield)


# -- The labs -----------------------------------------------------------------------


@pytest.fixture(scope="session")
@starts_servers
def lab() -> Iterator[RunningLab]:
    """The session's lab: started once, stopped by PID at the end whatever happened.

    Its primary stays at aws: tests that use it touch only names and rows of their own.
    """
    with running_lab(TEST_SUBNET) as started:
        yield started


@pytest.fixture(scope="session")
@starts_servers
def moves_lab() -> Iterator[RunningLab]:
    """The lab of the modules that move the primary: drills, the engine's moves, the controller.

    Each of their tests leaves it whole (one primary, one standby streaming from it),
    at aws when it found it there; they share it to start one lab, not three. The
    controller's module runs last of them (file order): it leaves a notice pending.
    Two people running these modules at once need two subnets
    (FAILOVER_MOVES_TEST_SUBNET).
    """
    with running_lab(MOVES_SUBNET, "failover-test-moves-") as started:
        yield started


@pytest.fixture(scope="session")
@starts_servers
def drill_lab() -> Iterator[RunningLab]:
    """The drills' lab: each drill moves the primary and moves it back.

    Its own, not the moves' lab, so that a run with two workers (``make test``)
    plays the drills beside the engine's and the controller's moves.
    """
    with running_lab(DRILL_SUBNET, "failover-test-drills-") as started:
        yield started


def own_lab(subnet: str, prefix: str, agent_leases: bool = True) -> Any:
    """A module's own lab on ``subnet``, for a module that breaks it on purpose.

    Assign it to the fixture's name in the module: ``lab = own_lab("127.97", "...")``.
    """
    @pytest.fixture(scope="module")
    @starts_servers
    def fixture() -> Iterator[RunningLab]:
        """A lab of this module's own, stopped by PID at the end whatever happened."""
        with running_lab(subnet, prefix, agent_leases) as started:
            yield started

    return fixture
