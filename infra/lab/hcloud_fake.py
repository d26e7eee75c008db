"""A FAKE Hetzner Cloud API for the lab (part ``hcloud@hetzner``): not Hetzner, a stand-in.

Nothing real of Hetzner's runs locally (moto has no Hetzner), so the lab runs
this small server in its place. It speaks the real API's shapes for what the
controller and the drills use, so the real ``hcloud`` client works against
it unchanged (``hcloud.Client(token=..., api_endpoint="http://ADDR:5002/v1")``):

- ``GET /v1/servers`` (``name``, ``status``, ``label_selector``, ``page``,
  ``per_page``; answers carry ``meta.pagination``) and ``GET /v1/servers/{id}``;
- ``POST /v1/servers/{id}/actions/poweroff|poweron|shutdown|reboot|reset``,
  answered 201 with the ``action`` started;
- ``GET /v1/actions/{id}``;
- errors as ``{"error": {"code", "message", "details"}}`` with the real codes.

An action runs until somebody looks at it: the first read finds it finished
(a real one takes seconds; here nobody should have to wait for a fake).

Beyond the API, ``/_fake/...`` (guarded by an admin token of its own, never
the project's) lets the lab block the project the way a provider suspends an
account, and unblock it; ``GET /_fake/state`` says how things stand.

Run by the lab as ``python -m infra.lab.hcloud_fake --host H --port P
--token-file F --admin-token-file F --server NAME=IPV4``: tokens come from
0600 files, never the command line, and nothing logs them.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from failover.exceptions import ConfigError
from failover.secretfiles import read_private

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


class FakeApiError(Exception):
    """An error answered in Hetzner's shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class FakeProject:
    """One Hetzner Cloud project: its servers, actions, token and whether it is blocked."""

    token: str
    admin_token: str
    servers: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(4711))

    def __repr__(self) -> str:
        return f"FakeProject(servers={len(self.servers)}, blocked={self.blocked})"

    def add_server(self, name: str, ipv4: str, labels: dict[str, str] | None = None) -> int:
        """Create a running server whose public IPv4 is ``ipv4``; returns its id."""
        server_id = next(self._ids)
        self.servers[server_id] = {
            "id": server_id, "name": name, "status": "running", "created": _now(),
            "public_net": {
                "ipv4": {"id": next(self._ids), "ip": ipv4, "blocked": False,
                         "dns_ptr": f"static.{ipv4}.clients.your-server.de"},
                "ipv6": None, "floating_ips": [], "firewalls": [],
            },
            "private_net": [],
            "server_type": {
                "id": 22, "name": "cx22", "description": "CX22", "category": "cost_optimized",
                "cores": 2, "memory": 4.0, "disk": 40, "storage_type": "local",
                "cpu_type": "shared", "architecture": "x86", "deprecation": None,
            },
            "location": {
                "id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1",
                "country": "DE", "city": "Falkenstein", "latitude": 50.47612,
                "longitude": 12.370071, "network_zone": "eu-central",
            },
            "image": {
                "id": 161547269, "type": "system", "status": "available",
                "name": "ubuntu-24.04", "description": "Ubuntu 24.04", "os_flavor": "ubuntu",
                "os_version": "24.04", "architecture": "x86", "rapid_deploy": True,
            },
            "iso": None, "rescue_enabled": False, "locked": False, "backup_window": None,
            "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False}, "labels": labels or {},
            "volumes": [], "load_balancers": [], "primary_disk_size": 40,
            "placement_group": None,
        }
        return server_id

    def server(self, server_id: int) -> dict[str, Any]:
        """One server, or Hetzner's not_found."""
        try:
            return self.servers[server_id]
        except KeyError:
            raise FakeApiError(404, "not_found", f"server with ID '{server_id}' not found") \
                from None

    def start_action(self, server_id: int, verb: str) -> dict[str, Any]:
        """Start a power action on a server; it finishes when first read."""
        server = self.server(server_id)
        command, running_status, _ = COMMANDS[verb]
        action_id = next(self._ids)
        server["status"] = running_status
        self.actions[action_id] = {
            "id": action_id, "command": command, "status": "running", "progress": 0,
            "started": _now(), "finished": None,
            "resources": [{"id": server_id, "type": "server"}], "error": None,
        }
        return dict(self.actions[action_id])

    def read_action(self, action_id: int) -> dict[str, Any]:
        """An action by id, finished by this very look if it was still running."""
        try:
            action = self.actions[action_id]
        except KeyError:
            raise FakeApiError(404, "not_found", f"action with ID '{action_id}' not found") \
                from None
        if action["status"] == "running":
            verb = next(v for v, (command, _, _) in COMMANDS.items()
                        if command == action["command"])
            for resource in action["resources"]:
                if resource["id"] in self.servers:
                    self.servers[resource["id"]]["status"] = COMMANDS[verb][2]
            action.update(status="success", progress=100, finished=_now())
        return dict(action)


def _matches(server: dict[str, Any], selector: str) -> bool:
    """Whether a server's labels match a label selector (``k=v``, ``k!=v``, ``k``, ``!k``)."""
    labels: dict[str, str] = server["labels"]
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


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def create_app(project: FakeProject) -> FastAPI:
    """The fake API over one project."""
    app = FastAPI(title="fake Hetzner Cloud API (failover lab)", docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.exception_handler(FakeApiError)
    async def api_error(_: Request, exc: FakeApiError) -> JSONResponse:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message,
                                       "details": {}}}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "invalid_input"
        return JSONResponse({"error": {"code": code, "message": str(exc.detail),
                                       "details": {}}}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"name": ".".join(str(p) for p in e["loc"][1:]), "messages": [e["msg"]]}
                  for e in exc.errors()]
        return JSONResponse({"error": {"code": "invalid_input", "message": "invalid input",
                                       "details": {"fields": fields}}}, status_code=400)

    def project_token(authorization: Annotated[str | None, Header()] = None) -> None:
        # compare_digest: the answer's timing must not tell how much of a guess was right.
        if not hmac.compare_digest(_bearer(authorization).encode(), project.token.encode()):
            raise FakeApiError(*UNAUTHORIZED)
        if project.blocked:
            raise FakeApiError(*BLOCKED)

    def admin_token(authorization: Annotated[str | None, Header()] = None) -> None:
        if not hmac.compare_digest(_bearer(authorization).encode(),
                                   project.admin_token.encode()):
            raise FakeApiError(*UNAUTHORIZED)

    api = [Depends(project_token)]

    @app.get("/v1/servers", dependencies=api)
    async def list_servers(
        name: str | None = None,
        label_selector: str | None = None,
        status: Annotated[list[str] | None, Query()] = None,
        page: Annotated[int, Query(ge=1)] = 1,
        per_page: Annotated[int, Query(ge=1, le=PER_PAGE_MAX)] = PER_PAGE_DEFAULT,
    ) -> dict[str, Any]:
        found = [s for _, s in sorted(project.servers.items())
                 if (name is None or s["name"] == name)
                 and (not status or s["status"] in status)
                 and (label_selector is None or _matches(s, label_selector))]
        last = max(1, -(-len(found) // per_page))
        return {
            "servers": found[(page - 1) * per_page: page * per_page],
            "meta": {"pagination": {
                "page": page, "per_page": per_page,
                "previous_page": page - 1 if page > 1 else None,
                "next_page": page + 1 if page < last else None,
                "last_page": last, "total_entries": len(found),
            }},
        }

    @app.get("/v1/servers/{server_id}", dependencies=api)
    async def get_server(server_id: int) -> dict[str, Any]:
        return {"server": project.server(server_id)}

    def power(verb: str) -> None:
        async def act(server_id: int) -> JSONResponse:
            return JSONResponse({"action": project.start_action(server_id, verb)},
                                status_code=201)

        app.post(f"/v1/servers/{{server_id}}/actions/{verb}", dependencies=api)(act)

    for verb in COMMANDS:
        power(verb)

    @app.get("/v1/actions/{action_id}", dependencies=api)
    async def get_action(action_id: int) -> dict[str, Any]:
        return {"action": project.read_action(action_id)}

    control = [Depends(admin_token)]

    @app.get("/_fake/state", dependencies=control)
    async def state() -> dict[str, Any]:
        return {"fake": True, "blocked": project.blocked, "servers": len(project.servers),
                "actions": len(project.actions)}

    @app.post("/_fake/block", dependencies=control)
    async def block() -> dict[str, Any]:
        project.blocked = True
        return await state()

    @app.post("/_fake/unblock", dependencies=control)
    async def unblock() -> dict[str, Any]:
        project.blocked = False
        return await state()

    return app


def _token(path: str) -> str:
    token = read_private(Path(path), "token file").strip()
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fake until SIGTERM; exit status 2 on a bad token file or argument."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.lab.hcloud_fake",
        description="A FAKE Hetzner Cloud API for the failover lab (servers and actions).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--token-file", required=True, help="the project's API token (0600)")
    parser.add_argument("--admin-token-file", required=True,
                        help="the token of /_fake/... (0600)")
    parser.add_argument("--server", action="append", default=[], metavar="NAME=IPV4",
                        help="a running server to create at startup (repeatable)")
    args = parser.parse_args(argv)
    try:
        project = FakeProject(_token(args.token_file), _token(args.admin_token_file))
    except ConfigError as exc:
        print(f"hcloud_fake: {exc}", file=sys.stderr)
        return 2
    for spec in args.server:
        name, sep, ipv4 = spec.partition("=")
        if not sep or not name or not ipv4:
            parser.error(f"--server {spec!r} must be NAME=IPV4")
        project.add_server(name, ipv4)
    uvicorn.run(create_app(project), host=args.host, port=args.port, log_level="warning",
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
