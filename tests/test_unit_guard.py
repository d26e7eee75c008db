"""The unit layer's guard (tests/conftest.py): servers are refused in unmarked tests, nothing else.

These tests are themselves unmarked, so the guard is active while they run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.lab.lab import Lab
from infra.lab.layout import LabLayout
from tests.conftest import server_in

PG = "/usr/lib/postgresql/15/bin"
REFUSED = "in a test without the lab marker"


@pytest.mark.parametrize(("argv", "server"), [
    ([f"{PG}/postgres", "-D", "/tmp/x/pgdata", "-c", "port=5432"], "postgres"),
    ([f"{PG}/pg_ctl", "start", "-D", "/tmp/x"], "pg_ctl"),
    (["/usr/sbin/named", "-g", "-c", "/tmp/x/named.conf", "-u", "bind"], "named"),
    (["/usr/sbin/dovecot", "-F", "-c", "/tmp/x/dovecot.conf"], "dovecot"),
    ([sys.executable, "-m", "moto.server", "-H", "127.66.10.1", "-p", "5000"], "moto.server"),
    ([sys.executable, "-m", "infra.lab.moto_server", "--region", "eu-central-1", "-p", "5003"],
     "infra.lab.moto_server"),
    ([sys.executable, "-m", "infra.refapp", "--host", "127.66.10.1"], "infra.refapp"),
    ([sys.executable, "-m", "infra.lab.hcloud_fake", "--port", "5002"], "infra.lab.hcloud_fake"),
    ([".venv/bin/uvicorn", "app:app"], "uvicorn"),
    ([sys.executable, "-m", "failover", "watch", "--config", "x.yaml"], "failover watch"),
    ([".venv/bin/failover", "lab", "up"], "failover lab up"),
    ([sys.executable, "-m", "failover", "--debug", "lab", "up"], "failover lab up"),
])
def test_the_labs_servers_are_recognised(argv: list[str], server: str) -> None:
    assert server_in(argv) == server


@pytest.mark.parametrize("argv", [
    [sys.executable, "-c", "import time; time.sleep(60)"],
    [sys.executable, "-m", "failover", "lab", "status", "--state-dir", "/tmp/x"],
    [sys.executable, "-m", "failover", "drill", "--help"],
    ["psql", "-U", "postgres", "-h", "127.0.0.1"],
    [sys.executable, "-m"],
    [],
])
def test_other_commands_are_not_servers(argv: list[str]) -> None:
    assert server_in(argv) is None


def test_starting_a_server_process_fails_before_anything_runs() -> None:
    with pytest.raises(AssertionError, match=f"starting dovecot .*{REFUSED}"):
        subprocess.run(["/usr/sbin/dovecot", "-F"], check=False)
    with pytest.raises(AssertionError, match=f"starting moto.server .*{REFUSED}"):
        subprocess.Popen(f"{sys.executable} -m moto.server -p 1", shell=True)


def test_other_processes_still_run() -> None:
    done = subprocess.run([sys.executable, "-c", "print('ran')"], capture_output=True,
                          text=True, check=True)
    assert done.stdout == "ran\n"


def test_starting_a_lab_or_uvicorn_fails(tmp_path: Path) -> None:
    import uvicorn

    with pytest.raises(AssertionError, match=f"starting a lab, {REFUSED}"):
        Lab(tmp_path).up(LabLayout(subnet="127.66"))
    with pytest.raises(AssertionError, match=f"starting uvicorn, {REFUSED}"):
        uvicorn.Server(uvicorn.Config("app:app"))
