"""The controller's HTTP API: status, signed signals, Prometheus metrics.

``GET /v1/status``   sites, roles, lag, the last decisions, pending notices, moves
``POST /v1/signals`` a termination notice, signed (see ``failover.watch.webhook``)
``GET /metrics``     Prometheus exposition
``GET /healthz``     200 while the controller runs

It runs in the controller's own event loop (uvicorn, with its signal
handling left to the controller), so a request sees the controller's state
without locks.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from failover.exceptions import ConfigError
from failover.logs import log_event
from failover.watch.controller import Controller
from failover.watch.signals import DEADLINE_PROBLEMS, NoticeRefused
from failover.watch.store import StoreError
from failover.watch.webhook import SignalRefused, parse_signal, verify

log = logging.getLogger("failover.watch")
MAX_BODY = 64 * 1024  # a notice is a few hundred bytes


def make_app(controller: Controller, secret: bytes) -> FastAPI:
    """The API of one controller; ``secret`` checks the signals' signatures."""
    app = FastAPI(title="failover watch", docs_url=None, redoc_url=None, openapi_url=None)
    providers = sorted(set(controller.sites.values()))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "primary": controller.primary}

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return controller_status(controller)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(controller.metrics.text(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/signals", status_code=202)
    async def signals(request: Request) -> Any:
        # The body is read before it can be verified: cap it, so that nobody
        # unsigned can make the controller hold megabytes.
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                controller.metrics.signals_refused.labels("too-large").inc()
                return JSONResponse({"error": f"body over {MAX_BODY} bytes",
                                     "reason": "too-large"}, status_code=413)
        now = controller.clock()
        peer = request.client.host if request.client else "?"
        try:
            # The store keeps the signatures seen while fresh, across restarts.
            verify(secret, request.headers, body, now=now,
                   max_age=controller.config.max_signature_age, guard=controller.store)
            notice = parse_signal(body, now=now, providers=providers)
            new = controller.deliver(notice)
        except SignalRefused as refused:
            controller.metrics.signals_refused.labels(refused.reason).inc()
            if refused.reason in DEADLINE_PROBLEMS:
                controller.metrics.notices_refused.labels("webhook", refused.reason).inc()
            log_event(log, "watch.signal", outcome="refused", reason=refused.reason,
                      peer=peer, detail=str(refused))
            return JSONResponse(refused.to_dict(), status_code=refused.http_status)
        except NoticeRefused as refused:  # the clock moved past the allowance meanwhile
            return JSONResponse({"error": str(refused), "reason": refused.reason},
                                status_code=400)
        except StoreError as exc:  # the replay guard's write or the notice's
            log_event(log, "watch.signal", outcome="error", peer=peer, detail=str(exc))
            return JSONResponse({"error": f"the notice could not be kept: {exc}; send it "
                                 "again", "reason": "store"}, status_code=503)
        return {"notice": notice.to_dict(), "new": new}

    return app


def controller_status(controller: Controller) -> dict[str, Any]:
    """The controller's view as JSON-ready data (``GET /v1/status``)."""
    snap = controller.snapshot()
    sites: dict[str, Any] = {}
    for site, provider in controller.sites.items():
        db = snap.latest("database", site)
        api = snap.latest("api", site)
        sites[site] = {
            "provider": provider,
            "role": db.facts.get("role") if db is not None and db.ok else None,
            "database": None if db is None else db.to_dict(),
            "lag_bytes": None if db is None else db.facts.get("lag_bytes"),
            "app": {v: (looks[-1].to_dict() if (looks := snap.looks("http", site, v))
                        else None) for v in controller.settings.vantages},
            "api": None if api is None else api.to_dict(),
        }
    dns = {t: h[-1].to_dict() for (k, t, _v), h in controller.history.items()
           if k == "dns" and h}
    return {
        "primary": controller.primary, "mode": controller.settings.mode,
        "cluster": controller.leadership.status(),
        "started": controller.started,
        "sites": sites, "dns": dns,
        "decisions": list(controller.recent),
        "notices": [n.to_dict() for n in snap.notices],
        "moves": [m.__dict__ for m in snap.moves],
        "run": None if snap.run is None else snap.run.__dict__,
        "probes": controller.scheduler.stats(),
        "drills": controller.drills.status(),
    }


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the controller stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listening_socket(listen: str) -> socket.socket:
    """Bind ``host:port`` now, so a taken port is one clear error before anything starts."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"watch.listen {listen}: cannot listen there ({exc.strerror}); is "
                          "another failover watch running? Stop it, or give --listen") from None
    sock.listen(128)
    return sock


def server(app: FastAPI) -> uvicorn.Server:
    """A server for ``app``; ``await server.serve(sockets=[listening_socket(...)])``."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return _Server(config)
