"""Cut a lab site off from the controller while the workload still reaches it (nftables, root).

Every lab address is on loopback, and a connection to any 127.x address
leaves from 127.0.0.1 unless its socket binds another source: psycopg
(libpq) cannot, and neither does a site's app reaching its own database. So
a rule on source addresses cannot tell the controller's packets from the
workload's or the site's own. The socket's group can: the drill starts the
controller (``failover watch``) with a group of its own, ``CONTROLLER_GID``
(root keeps uid 0, so it still reads every file), and a cut is one rule::

    meta skgid CONTROLLER_GID ip daddr <site address> drop

in an output-hook chain of a table of our own per cut, ``inet
failover_cut_<name>``. The kernel stamps a socket with its creator's group,
so the rule also catches connections opened before the cut (pooled HTTP,
PostgreSQL sessions) and everything the controller forks. Packets are
dropped, not rejected: connects and requests time out, as across a real
partition, rather than being refused at once. Healing deletes the table by
its name; nothing else of the machine's firewall is read or touched.

Only root may change the kernel's rules, and the ``nft`` program must be
installed (``apt-get install -y nftables``).
"""

from __future__ import annotations

import grp
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path
from typing import Any

from infra.lab.exceptions import LabError, MissingBinary

# The controller's group during a drill. systemd's table of uid/gid ranges
# (UIDS-GIDS.md) leaves 65536-524287 unused: no distribution allocates there,
# it is above the regular users (1000-59999), systemd's dynamic service users
# (61184-65519) and nobody (65534), and below its container ranges (524288 and
# up). It also fits in 31 bits, which some tools read as a signed number.
# 84712: the controller's port 8470, issue 12. A group that exists in
# /etc/group with this number would be cut too: `cut_off` refuses it.
CONTROLLER_GID = 84712
TABLE_PREFIX = "failover_cut_"
FAMILY = "inet"  # both IPv4 and IPv6 pass through it; the rule matches IPv4 only
CHAIN = "output"
INSTALL = "apt-get install -y nftables"
NFT_PLACES = ("/usr/sbin/nft", "/sbin/nft")  # outside PATH for a user without sbin in it
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
NFT_TIMEOUT = 10.0


class PartitionError(LabError):
    """A cut could not be made or healed."""


def table_name(name: str) -> str:
    """The nftables table of the cut called ``name``: ``failover_cut_<name>``."""
    if not NAME.fullmatch(name):
        raise PartitionError(f"cut name {name!r}: use 1-64 letters, digits, '_' or '-'")
    return TABLE_PREFIX + name


def nft_binary() -> Path:
    """The ``nft`` program; MissingBinary with the install command when it is absent."""
    found = shutil.which("nft") or next(
        (p for p in NFT_PLACES if Path(p).exists()), None)
    if found is None:
        raise MissingBinary(f"nftables (nft) is not installed; as root: {INSTALL}")
    return Path(found)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise PartitionError("cutting a site off needs root (nftables rules are the "
                             "kernel's): run the drill as root")


def _nft(*args: str, script: dict[str, Any] | None = None) -> str:
    """Run ``nft -j`` with ``args`` (and a JSON script on stdin); its output."""
    _need_root()
    argv = [str(nft_binary()), "-j", *args]
    if script is not None:
        argv += ["-f", "-"]
    try:
        done = subprocess.run(argv, input=None if script is None else json.dumps(script),
                              capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise PartitionError(f"nft did not answer in {NFT_TIMEOUT:g} s") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[0]
        raise PartitionError(f"nft {' '.join(args) or '-f -'} failed: {why}")
    return done.stdout


def _table(table: str) -> dict[str, Any]:
    return {"table": {"family": FAMILY, "name": table}}


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _rule(address: str, gid: int, ports: Collection[int]) -> list[dict[str, Any]]:
    rule = [_match({"meta": {"key": "skgid"}}, gid),
            _match({"payload": {"protocol": "ip", "field": "daddr"}}, address)]
    if ports:
        rule.append(_match({"payload": {"protocol": "tcp", "field": "dport"}},
                           {"set": sorted(ports)}))
    rule.append({"drop": None})
    return rule


def _cut_script(table: str, address: str, gid: int, ports: Collection[int]) -> dict[str, Any]:
    """One transaction: the table replaced by a fresh one holding the drop rule."""
    rules = [_rule(address, gid, ports)]
    return {"nftables": [
        # add then delete: the table is gone whether or not it was there, so a
        # second cut replaces the first, atomically, without an error.
        {"add": _table(table)}, {"delete": _table(table)}, {"add": _table(table)},
        {"add": {"chain": {"family": FAMILY, "table": table, "name": CHAIN,
                           "type": "filter", "hook": "output", "prio": 0,
                           "policy": "accept"}}},
        *({"add": {"rule": {"family": FAMILY, "table": table, "chain": CHAIN, "expr": rule}}}
          for rule in rules),
    ]}


def _check_gid(gid: int) -> None:
    if isinstance(gid, bool) or not isinstance(gid, int) or not 0 < gid < 2**31:
        raise PartitionError(f"gid {gid!r}: a group number between 1 and 2^31-1 (0 is "
                             "root's, whose processes the workload and the lab share)")
    try:
        taken = grp.getgrgid(gid).gr_name
    except KeyError:
        return
    raise PartitionError(f"gid {gid} is the group {taken!r} of this machine: its processes "
                         "would be cut off too; give the controller a group of its own")


def cut_off(address: str, gid: int, name: str, *, ports: Collection[int] = ()) -> str:
    """Drop every packet that processes of group ``gid`` send to ``address``; a sentence.

    ``ports`` limits the cut to those TCP ports (e.g. a site's database, app
    and agent, leaving a provider's API that the lab serves from the same
    address reachable). Cutting again under the same name replaces the cut.
    """
    table = table_name(name)
    try:
        target = ipaddress.IPv4Address(address)
    except ValueError:
        raise PartitionError(f"cut {name}: {address!r} is not an IPv4 address") from None
    _check_gid(gid)
    if any(isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536 for p in ports):
        raise PartitionError(f"cut {name}: ports must be TCP ports, not {sorted(ports)!r}")
    _nft(script=_cut_script(table, str(target), gid, ports))
    which = f"TCP ports {', '.join(map(str, sorted(ports)))} of " if ports else ""
    return (f"cut {which}{target} off from processes of group {gid}: their packets are "
            f"dropped (nftables table {FAMILY} {table})")


def is_cut(name: str) -> bool:
    """Whether the cut called ``name`` is in place (its table exists)."""
    table = table_name(name)
    listing = json.loads(_nft("list", "tables"))
    return any(entry.get("table", {}).get("family") == FAMILY
               and entry["table"].get("name") == table
               for entry in listing.get("nftables", []))


def heal(name: str) -> str:
    """Delete the cut called ``name`` (its table, by name); a sentence. Healing twice is fine."""
    table = table_name(name)
    if not is_cut(name):
        return f"nothing to heal: no nftables table {FAMILY} {table}"
    _nft(script={"nftables": [{"add": _table(table)}, {"delete": _table(table)}]})
    return f"healed: nftables table {FAMILY} {table} deleted"
