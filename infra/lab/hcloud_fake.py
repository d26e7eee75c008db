"""A FAKE Hetzner Cloud API for the lab (``hcloud@hetzner``, ``hcloud@spare``): a stand-in.

Nothing real of Hetzner's runs locally (moto has no Hetzner), so the lab runs
this small server in its place. It speaks the real API's shapes for what the
controller, the drills and a rebuild use, so the real ``hcloud`` client works
against it unchanged (``hcloud.Client(token=..., api_endpoint="http://ADDR:5002/v1")``):

- ``GET /v1/servers`` (``name``, ``status``, ``label_selector``, ``page``,
  ``per_page``; answers carry ``meta.pagination``) and ``GET /v1/servers/{id}``;
- ``POST /v1/servers/{id}/actions/poweroff|poweron|shutdown|reboot|reset``,
  answered 201 with the ``action`` started (a server's status only: an agent
  it booted keeps running);
- ``GET /v1/actions/{id}``;
- provisioning: primary IPs, firewalls, networks, servers made and deleted
  (``infra.lab.hcloud_provision``); a server made with a failover agent's
  cloud-config is booted on this machine (``infra.lab.hcloud_boot``);
- errors as ``{"error": {"code", "message", "details"}}`` with the real codes.

An action runs until somebody looks at it: the first read after its work is
done finds it finished (a real one takes seconds; here nobody should have to
wait for a fake).

Beyond the API, ``/_fake/...`` (guarded by an admin token of its own, never
the project's) lets the lab block the project the way a provider suspends an
account, and unblock it; ``GET /_fake/state`` says how things stand.

Run by the lab as ``python -m infra.lab.hcloud_fake --host H --port P
--token-file F --admin-token-file F`` and, for the hetzner site, ``--server
NAME=IPV4`` (a running server made at every start), for the spare site
``--root DIR --address-pool ADDR`` (where booted servers write their files
and record their agents; the IPv4 addresses primary IPs are given). Tokens
come from 0600 files, never the command line, and nothing logs them. On
SIGTERM the fake exits and leaves the agents it booted running: ``lab down``
stops them by the PIDs recorded under DIR, and a restarted fake adopts them.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from failover.exceptions import ConfigError
from failover.secretfiles import read_private
from infra.lab.hcloud_network import Network
from infra.lab.hcloud_project import (
    BLOCKED,
    COMMANDS,
    PER_PAGE_DEFAULT,
    PER_PAGE_MAX,
    UNAUTHORIZED,
    FakeApiError,
    FakeProject,
    paginate,
    select,
)
from infra.lab.hcloud_provision import Provisioning, register

__all__ = ["FakeApiError", "FakeProject", "create_app", "main"]


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def create_app(project: FakeProject, provisioning: Provisioning | None = None) -> FastAPI:
    """The fake API over one project (with ``provisioning``'s resources; by default none)."""
    app = FastAPI(title="fake Hetzner Cloud API (failover lab)", docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.exception_handler(FakeApiError)
    async def api_error(_: Request, exc: FakeApiError) -> JSONResponse:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message,
                                       "details": exc.details}}, status_code=exc.status)

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
        found = [s for s in select(project.servers, name, label_selector)
                 if not status or s["status"] in status]
        return paginate(found, "servers", page, per_page)

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

    register(app, provisioning or Provisioning(project, Network(project)), api)

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


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fake until SIGTERM; exit status 2 on a bad token file or argument."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.lab.hcloud_fake",
        description="A FAKE Hetzner Cloud API for the failover lab (servers, actions, "
                    "provisioning).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--token-file", required=True, help="the project's API token (0600)")
    parser.add_argument("--admin-token-file", required=True,
                        help="the token of /_fake/... (0600)")
    parser.add_argument("--server", action="append", default=[], metavar="NAME=IPV4",
                        help="a running server to create at startup (repeatable)")
    parser.add_argument("--root", type=Path, help="where servers made with user_data write "
                        "their files and records (the lab's state dir); without it, none boots")
    parser.add_argument("--address-pool", action="extend", nargs="+", default=[],
                        type=_ipv4, metavar="IPV4",
                        help="addresses for primary IPs, handed out in order (repeatable)")
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
    root = args.root.absolute() if args.root is not None else None
    if root is not None and not root.is_dir():
        parser.error(f"--root {root} is not a directory")
    provisioning = Provisioning(project, Network(project, tuple(args.address_pool)), root)
    provisioning.adopt()
    uvicorn.run(create_app(project, provisioning), host=args.host, port=args.port,
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
