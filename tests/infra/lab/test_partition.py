"""A site cut off by nftables: the controller's group cannot reach it, everyone else can.

The lab tests change the kernel's rules, so they need root and ``nft``; each
works on a table named after this test process and deletes it in a finally.
The probes are short Python processes run with the group to cut (or root's),
connecting to a listener of this module's own on 127.96.3.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from failover.processes import spawn, stop
from infra.lab import partition
from infra.lab.exceptions import MissingBinary
from infra.lab.partition import PartitionError, cut_off, heal, is_cut, table_name

ADDRESS = "127.96.3.1"  # this module's own loopback address
GROUP = 84799  # not the drill's CONTROLLER_GID: a drill running meanwhile is not touched
PROBE_TIMEOUT = 1.0
# Connect, then (once told to on stdin) send a line and wait for its echo.
PROBE = """
import socket, sys
sock = socket.socket()
sock.settimeout({timeout})
try:
    sock.connect(({address!r}, {port}))
except OSError as exc:
    print(type(exc).__name__, flush=True)
    sys.exit()
print("connected", flush=True)
if {hold}:
    sys.stdin.readline()
    sock.sendall(b"ping\\n")
    try:
        print("echoed" if sock.recv(16) else "closed", flush=True)
    except OSError as exc:
        print(type(exc).__name__, flush=True)
"""


@dataclass(frozen=True)
class Listener:
    """A TCP server that echoes, on ADDRESS."""

    port: int


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = socket.create_server((ADDRESS, 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            while data := conn.recv(16):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Listener(server.getsockname()[1])
    finally:
        done.set()
        thread.join(timeout=5)
        server.close()


def nft_ready() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: nftables rules are the kernel's")
    try:
        partition.nft_binary()
    except MissingBinary:
        pytest.skip(f"nft is not installed ({partition.INSTALL})")


def drop_table(family: str, table: str) -> None:
    """Delete a table whether or not it exists (add, then delete, in one transaction)."""
    subprocess.run([str(partition.nft_binary()), "-f", "-"], input=f"add table {family} {table}\n"
                   f"delete table {family} {table}\n", text=True, check=True)


@pytest.fixture
def name() -> Iterator[str]:
    nft_ready()
    mine = f"test{os.getpid()}"
    try:
        yield mine
    finally:
        drop_table("inet", table_name(mine))


def probe(port: int, group: int, *, hold: bool = False) -> subprocess.Popen[str]:
    code = PROBE.format(timeout=PROBE_TIMEOUT, address=ADDRESS, port=port, hold=hold)
    return subprocess.Popen([sys.executable, "-c", code], group=group, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def connects(port: int, group: int) -> str:
    """How a connect of a process of ``group`` ended: connected, TimeoutError..."""
    out, _ = probe(port, group).communicate(timeout=30)
    return out.strip()


@pytest.mark.lab  # changes the kernel's rules
def test_the_cut_group_times_out_and_everyone_else_connects(listener: Listener,
                                                            name: str) -> None:
    assert connects(listener.port, GROUP) == "connected"
    line = cut_off(ADDRESS, GROUP, name)
    assert f"group {GROUP}" in line and table_name(name) in line
    assert is_cut(name)
    assert connects(listener.port, GROUP) == "TimeoutError"  # dropped, not refused
    assert connects(listener.port, 0) == "connected"  # root's, like the workload

    assert heal(name) == f"healed: nftables table inet {table_name(name)} deleted"
    assert not is_cut(name)
    assert connects(listener.port, GROUP) == "connected"
    assert heal(name).startswith("nothing to heal")


@pytest.mark.lab  # changes the kernel's rules
def test_a_connection_made_before_the_cut_goes_silent(listener: Listener, name: str) -> None:
    before = probe(listener.port, GROUP, hold=True)
    assert before.stdout is not None and before.stdin is not None
    try:
        assert before.stdout.readline().strip() == "connected"
        cut_off(ADDRESS, GROUP, name)
        before.stdin.write("go\n")
        before.stdin.flush()
        assert before.stdout.readline().strip() == "TimeoutError"
    finally:
        before.kill()
        before.communicate(timeout=10)


@pytest.mark.lab  # changes the kernel's rules
def test_a_cut_to_some_ports_leaves_the_others_and_a_second_cut_replaces_it(
        listener: Listener, name: str) -> None:
    other = listener.port + 1 if listener.port < 65535 else listener.port - 1
    line = cut_off(ADDRESS, GROUP, name, ports=[other])
    assert line.startswith(f"cut TCP ports {other} of {ADDRESS}")
    assert connects(listener.port, GROUP) == "connected"

    cut_off(ADDRESS, GROUP, name, ports=[listener.port])  # same name: replaced, no error
    assert connects(listener.port, GROUP) == "TimeoutError"
    rules = subprocess.run([str(partition.nft_binary()), "list", "table", "inet", table_name(name)],
                           capture_output=True, text=True, check=True).stdout
    assert rules.count("drop") == 1


@pytest.mark.lab  # changes the kernel's rules
def test_names_never_touch_other_tables(name: str) -> None:
    others = [("inet", table_name(name) + "x"), ("ip", table_name(name)),
              ("inet", table_name(name + "-2"))]
    try:
        for family, table in others:
            subprocess.run([str(partition.nft_binary()), "add", "table", family, table], check=True)
        assert not is_cut(name)  # a longer name, or the same name in another family
        cut_off(ADDRESS, GROUP, name)
        heal(name)
        heal(name)
        listing = subprocess.run([str(partition.nft_binary()), "list", "tables"],
                                 capture_output=True, text=True, check=True).stdout.splitlines()
        for family, table in others:
            assert f"table {family} {table}" in listing
    finally:
        for family, table in others:
            drop_table(family, table)


# -- refusals, before nft is asked anything (no root needed) ------------------------------


@pytest.mark.parametrize("bad", ["", "a b", "aws;flush ruleset", "x" * 65, "site/1"])
def test_a_cut_name_is_letters_digits_and_dashes(bad: str) -> None:
    with pytest.raises(PartitionError, match="cut name"):
        table_name(bad)
    assert table_name("hetzner-2") == "failover_cut_hetzner-2"


def test_a_cut_needs_an_ipv4_address_and_a_group_of_its_own() -> None:
    with pytest.raises(PartitionError, match="not an IPv4 address"):
        cut_off("app.lab.failover.test", GROUP, "aws")
    with pytest.raises(PartitionError, match="0 is root's"):
        cut_off(ADDRESS, 0, "aws")
    with pytest.raises(PartitionError, match="is the group"):
        cut_off(ADDRESS, os.getgid() or 65534, "aws")  # a group this machine has
    with pytest.raises(PartitionError, match="TCP ports"):
        cut_off(ADDRESS, GROUP, "aws", ports=[0])


def test_without_root_or_nft_a_cut_says_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition.os, "geteuid", lambda: 1000)
    with pytest.raises(PartitionError, match="needs root"):
        cut_off(ADDRESS, GROUP, "aws")
    with pytest.raises(PartitionError, match="needs root"):
        heal("aws")
    monkeypatch.setattr(partition.os, "geteuid", lambda: 0)
    monkeypatch.setattr(partition.shutil, "which", lambda _: None)
    monkeypatch.setattr(partition, "NFT_PLACES", ())
    with pytest.raises(MissingBinary, match="apt-get install -y nftables"):
        is_cut("aws")


def test_spawn_with_a_group_keeps_roots_uid(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: only root may take another group")
    record = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                   log=tmp_path / "sleeper.log", group=GROUP)
    try:
        status = Path(f"/proc/{record.pid}/status").read_text().splitlines()
        ids = {line.split(":")[0]: line.split()[1:] for line in status
               if line.startswith(("Uid:", "Gid:"))}
        assert ids == {"Uid": ["0"] * 4, "Gid": [str(GROUP)] * 4}  # real, effective, saved, fs
    finally:
        stop(record)
