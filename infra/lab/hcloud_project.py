"""The project behind the lab's FAKE Hetzner Cloud API: its servers, its actions, its errors.

Shared by the fake's read and power endpoints (``infra.lab.hcloud_fake``) and
its provisioning endpoints (``infra.lab.hcloud_provision``). Everything here
is touched from the server's event loop only; work that blocks (booting or
stopping a server's agent) runs beside it and is seen here as a future that
an action waits for.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

# Hetzner's public error codes (docs.hetzner.cloud, "Errors"), with their statuses.
UNAUTHORIZED = (401, "unauthorized", "Request was made with an invalid or unknown token")
# Hetzner documents no code of its own for a blocked project. A locked or
# suspended account still has valid tokens that may no longer do anything,
# which is what `forbidden` (403, "insufficient permissions for this request")
# says; a revoked token or a deleted project gives `unauthorized` (401). The
# controller's probe counts both as the account refused, not as an outage.
BLOCKED = (403, "forbidden", "insufficient permissions for this request: the project is "
           "blocked; contact support (fake hcloud)")
PER_PAGE_DEFAULT, PER_PAGE_MAX = 25, 50
# What each power action is called in an action's `command`, and the server's
# status while it runs and once it is done.
COMMANDS = {
    "poweroff": ("stop_server", "stopping", "off"),
    "poweron": ("start_server", "starting", "running"),
    "shutdown": ("shutdown_server", "stopping", "off"),
    "reboot": ("reboot_server", "running", "running"),
    "reset": ("reset_server", "running", "running"),
}
# What the fake offers, as the real API describes it (a few of each).
SERVER_TYPES: dict[str, dict[str, Any]] = {
    name: {"id": id_, "name": name, "description": name.upper(), "category": "cost_optimized",
           "cores": cores, "memory": float(cores * 2), "disk": cores * 20,
           "storage_type": "local", "cpu_type": "shared", "architecture": "x86",
           "deprecation": None}
    for name, id_, cores in (("cx22", 22, 2), ("cx32", 32, 4), ("cx42", 42, 8), ("cx52", 52, 16))
}
LOCATIONS: dict[str, dict[str, Any]] = {
    name: {"id": id_, "name": name, "description": description, "country": country,
           "city": city, "latitude": lat, "longitude": lon, "network_zone": "eu-central"}
    for name, id_, description, country, city, lat, lon in (
        ("fsn1", 1, "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071),
        ("nbg1", 2, "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665),
        ("hel1", 3, "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379),
    )
}
# Datacenters: the deprecated way to name a place, still taken by the API.
DATACENTERS: dict[str, dict[str, Any]] = {
    name: {"id": id_, "name": name, "description": f"{LOCATIONS[loc]['city']} virtual DC",
           "location": LOCATIONS[loc]}
    for name, id_, loc in (("fsn1-dc14", 4, "fsn1"), ("nbg1-dc3", 2, "nbg1"),
                           ("hel1-dc2", 3, "hel1"))
}
IMAGES: dict[str, dict[str, Any]] = {
    name: {"id": id_, "type": "system", "status": "available", "name": name,
           "description": description, "os_flavor": name.split("-")[0],
           "os_version": name.split("-")[1], "architecture": "x86", "rapid_deploy": True}
    for name, id_, description in (("ubuntu-24.04", 161547269, "Ubuntu 24.04"),
                                   ("ubuntu-22.04", 67794396, "Ubuntu 22.04"),
                                   ("debian-12", 114690387, "Debian 12"))
}


class FakeApiError(Exception):
    """An error answered in Hetzner's shape."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or {}


def invalid(name: str, message: str) -> FakeApiError:
    """Hetzner's ``invalid_input`` for one field of a request's body."""
    return FakeApiError(400, "invalid_input", f"invalid input in field '{name}'",
                        {"fields": [{"name": name, "messages": [message]}]})


def not_found(kind: str, key: object) -> FakeApiError:
    """Hetzner's ``not_found`` for one resource."""
    return FakeApiError(404, "not_found", f"{kind} with ID '{key}' not found")


def find(resources: dict[int, dict[str, Any]], key: int, kind: str) -> dict[str, Any]:
    """One resource by id, or Hetzner's not_found."""
    try:
        return resources[key]
    except KeyError:
        raise not_found(kind, key) from None


def now() -> str:
    """The time as the API writes it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Work(Protocol):
    """What an action waits for: a future of the work done beside the event loop."""

    def done(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


@dataclass
class FakeProject:
    """One Hetzner Cloud project: its servers, actions, token and whether it is blocked."""

    token: str
    admin_token: str
    servers: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(4711))
    # Per running action: what it waits for, and the servers' status once it is done.
    _work: dict[int, Work] = field(default_factory=dict)
    _then: dict[int, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"FakeProject(servers={len(self.servers)}, blocked={self.blocked})"

    def new_id(self) -> int:
        """A fresh id, unique across every kind of resource of the project."""
        return next(self._ids)

    def ids_above(self, taken: Iterable[int]) -> None:
        """Hand out ids above ``taken`` from now on (resources adopted from an earlier run)."""
        start = max([next(self._ids), *(i + 1 for i in taken)])
        self._ids = itertools.count(start)

    def add_server(self, name: str, ipv4: str | None, labels: dict[str, str] | None = None, *,
                   server_type: str = "cx22", location: str = "fsn1",
                   image: str = "ubuntu-24.04") -> int:
        """Create a running server whose public IPv4 is ``ipv4`` (None: none); returns its id."""
        server_id = self.new_id()
        self.servers[server_id] = {
            "id": server_id, "name": name, "status": "running", "created": now(),
            "public_net": {
                "ipv4": None if ipv4 is None else {
                    "id": self.new_id(), "ip": ipv4, "blocked": False,
                    "dns_ptr": f"static.{ipv4}.clients.your-server.de"},
                "ipv6": None, "floating_ips": [], "firewalls": [],
            },
            "private_net": [],
            "server_type": SERVER_TYPES[server_type],
            "location": LOCATIONS[location],
            "image": IMAGES[image],
            "iso": None, "rescue_enabled": False, "locked": False, "backup_window": None,
            "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False}, "labels": labels or {},
            "volumes": [], "load_balancers": [], "primary_disk_size": SERVER_TYPES[
                server_type]["disk"],
            "placement_group": None,
        }
        return server_id

    def server(self, server_id: int) -> dict[str, Any]:
        """One server, or Hetzner's not_found."""
        return find(self.servers, server_id, "server")

    def add_action(self, command: str, resources: list[tuple[int, str]], *,
                   work: Work | None = None, then: str | None = None) -> dict[str, Any]:
        """Start an action on ``(id, type)`` resources; it finishes when read after ``work``.

        ``then`` is the status its servers take once it finished.
        """
        action_id = self.new_id()
        self.actions[action_id] = {
            "id": action_id, "command": command, "status": "running", "progress": 0,
            "started": now(), "finished": None,
            "resources": [{"id": rid, "type": kind} for rid, kind in resources],
            "error": None,
        }
        if work is not None:
            self._work[action_id] = work
        if then is not None:
            self._then[action_id] = then
        return dict(self.actions[action_id])

    def start_action(self, server_id: int, verb: str) -> dict[str, Any]:
        """Start a power action on a server; it finishes when first read."""
        server = self.server(server_id)
        command, running_status, done_status = COMMANDS[verb]
        server["status"] = running_status
        return self.add_action(command, [(server_id, "server")], then=done_status)

    def read_action(self, action_id: int) -> dict[str, Any]:
        """An action by id, finished by this very look if its work is done (or it has none)."""
        action = find(self.actions, action_id, "action")
        work = self._work.get(action_id)
        if action["status"] == "running" and (work is None or work.done()):
            failed = work.exception() if work is not None else None
            if failed is not None:
                action.update(status="error", error={"code": "action_failed",
                                                     "message": str(failed) or "action failed"})
            else:
                action.update(status="success", progress=100)
                then = self._then.get(action_id)
                for resource in action["resources"]:
                    if then is not None and resource["id"] in self.servers:
                        self.servers[resource["id"]]["status"] = then
            action["finished"] = now()
            self._work.pop(action_id, None)
        return dict(action)


def matches(resource: dict[str, Any], selector: str) -> bool:
    """Whether a resource's labels match a label selector (``k=v``, ``k!=v``, ``k``, ``!k``)."""
    labels: dict[str, str] = resource["labels"]
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = term.split("=", 1)
            ok = labels.get(key) == value.lstrip("=")
        elif term.startswith("!"):
            ok = term[1:] not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def select(resources: dict[int, dict[str, Any]], name: str | None,
           label_selector: str | None) -> list[dict[str, Any]]:
    """The resources with that name and matching labels (either None: any), by id."""
    return [r for _, r in sorted(resources.items())
            if (name is None or r["name"] == name)
            and (label_selector is None or matches(r, label_selector))]


def paginate(found: list[dict[str, Any]], key: str, page: int, per_page: int) -> dict[str, Any]:
    """One page of a list answer, as ``{key: [...], "meta": {"pagination": ...}}``."""
    last = max(1, -(-len(found) // per_page))
    return {
        key: found[(page - 1) * per_page: page * per_page],
        "meta": {"pagination": {
            "page": page, "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last, "total_entries": len(found),
        }},
    }
