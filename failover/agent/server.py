"""The agent's HTTP API: signed requests in, signed JSON answers out.

``GET /v1/status``, ``GET /v1/operations/<id>`` and ``POST /v1/<operation>``
(see ``Agent.handlers``). Every request is signed (``protocol``); every POST
carries an operation id. A POST answers 200 with the operation's record when
it ended within its ``wait`` (default 5 s), else 202 with the record so far:
poll ``/v1/operations/<id>``. Errors are one line of JSON: ``{"error":
code, "message": ...}``. A request may carry its leader's fencing token; a
deposed leader's that would change something is refused with 409
``stale-token`` (``tokens``). ``POST /v1/failsafe`` is another primary's
agent asking this one to vouch (``failsafe``): signed with the secret the
agents share, not the controller's, it carries no operation id and no token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from failover import logs
from failover.agent.agent import Agent, BadRequest, OperationConflict
from failover.agent.failsafe import FAILSAFE_PATH, BadVouchRequest
from failover.agent.journal import Operation
from failover.agent.protocol import (
    MAX_BODY_BYTES,
    NONCE_HEADER,
    OPERATION_HEADER,
    OPERATION_ID,
    TOKEN_HEADER,
    sign_answer,
    signed_request,
)
from failover.agent.tokens import BadToken, TokenFloor, TokenRequired
from failover.exceptions import StaleToken
from failover.waiting import WaitTimeout, wait_for
from failover.watch.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignalRefused, verify

log = logging.getLogger("failover.agent")
MAX_WAIT = 30.0
READ_TIMEOUT = 10.0  # seconds a connection may sit idle or trickle a request
_SIGNED_HEADERS = (SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, OPERATION_HEADER,
                   TOKEN_HEADER)


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str, **more: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.more = status, code, message, more


class AgentServer(ThreadingHTTPServer):
    """The HTTP server of one agent."""

    daemon_threads = True

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.tokens = TokenFloor(agent.journal, required=agent.config.require_token,
                                 site=agent.config.site)
        super().__init__(agent.config.address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT
    server_version = "failover-agent"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged as events, not as Apache lines on stderr

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        # Refusals are signed too, so that the sender can trust (and show) why.
        signature = self.headers.get(SIGNATURE_HEADER, "")
        agent = self.server.agent
        peer = self.path.split("?", 1)[0] == FAILSAFE_PATH  # another agent's failsafe round
        secret = agent.cluster.peer_secret if peer and agent.cluster is not None else None
        try:
            body = self._body()
            if peer:
                status, answer = self._round(method, body, secret)
            else:
                op = self._verify(method, body, agent.secret)
                self._admit(method)
                status, answer = self._route(method, body, op)
        except _Refused as exc:
            status, answer = exc.status, {"error": exc.code, "message": exc.message, **exc.more}
            logs.log_event(log, "agent.refused", method=method, path=self.path, code=exc.code)
        except Exception as exc:  # a bug: say so in one line, keep serving
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            answer = {"error": "internal", "message": f"{type(exc).__name__}: {exc}"}
            log.exception("agent request failed")
        self._answer(status, answer, signature, secret or agent.secret)

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", "bad Content-Length") from None
        if length < 0:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", "bad Content-Length")
        if length > MAX_BODY_BYTES:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too-large",
                           f"a request body is at most {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _verify(self, method: str, body: bytes, secret: bytes, *,
                needs_op: bool = True) -> str | None:
        agent = self.server.agent
        for name in _SIGNED_HEADERS:  # one of each: the one checked is the one answered
            if len(self.headers.get_all(name) or []) > 1:
                raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", f"more than one {name}")
        try:
            verify(secret, dict(self.headers.items()),
                   signed_request(method, self.path, body,
                                  nonce=self.headers.get(NONCE_HEADER, ""),
                                  op=self.headers.get(OPERATION_HEADER, ""),
                                  token=self.headers.get(TOKEN_HEADER, "")), now=time.time(),
                   max_age=agent.config.max_signature_age, guard=agent.journal,
                   whose=f"agent {agent.config.site}'s")
        except SignalRefused as exc:
            raise _Refused(HTTPStatus.UNAUTHORIZED, exc.reason, str(exc)) from None
        op = self.headers.get(OPERATION_HEADER)
        if method == "POST" and needs_op and (op is None or not OPERATION_ID.fullmatch(op)):
            raise _Refused(HTTPStatus.BAD_REQUEST, "no-operation-id",
                           f"every POST carries {OPERATION_HEADER}: 8 to 64 of A-Z a-z 0-9 . _ -")
        return op

    def _admit(self, method: str) -> None:
        """The request's fencing token against the newest seen (after its signature held)."""
        try:
            self.server.tokens.admit(self.headers.get(TOKEN_HEADER), method, self.path)
        except StaleToken as exc:
            raise _Refused(HTTPStatus.CONFLICT, "stale-token", str(exc),
                           newest=exc.newest) from None
        except TokenRequired as exc:
            raise _Refused(HTTPStatus.PRECONDITION_REQUIRED, "token-required", str(exc)) \
                from None
        except BadToken as exc:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", str(exc)) from None

    def _route(self, method: str, body: bytes, op: str | None) -> tuple[HTTPStatus, Any]:
        agent = self.server.agent
        path = self.path.split("?", 1)[0]
        if method == "GET" and path == "/v1/status":
            return HTTPStatus.OK, {**agent.status(), "newest_token": self.server.tokens.newest()}
        if method == "GET" and path.startswith("/v1/operations/"):
            record = agent.journal.get(path.removeprefix("/v1/operations/"))
            if record is None:
                raise _Refused(HTTPStatus.NOT_FOUND, "unknown-operation", "no such operation")
            return HTTPStatus.OK, record.to_dict()
        kind = path.removeprefix("/v1/")
        if method != "POST" or not path.startswith("/v1/") or kind not in agent.handlers():
            raise _Refused(HTTPStatus.NOT_FOUND, "not-found", f"no {method} {path}")
        params = _params(body)
        wait = params.pop("wait", 5.0)
        if not isinstance(wait, int | float) or not 0 <= wait <= MAX_WAIT:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", f"wait is 0 to {MAX_WAIT:g} s")
        assert op is not None
        try:
            record = agent.submit(op, kind, params)
        except OperationConflict as exc:
            raise _Refused(HTTPStatus.CONFLICT, "operation-conflict", str(exc)) from None
        except BadRequest as exc:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", str(exc)) from None
        if record.state == "running":
            def ended() -> Operation | None:
                now = agent.journal.get(op)
                return now if now is not None and now.state != "running" else None

            try:
                record = wait_for(ended, timeout=float(wait), what=f"operation {op}", retry_on=())
            except WaitTimeout:
                record = agent.journal.get(op) or record
        return (HTTPStatus.ACCEPTED if record.state == "running" else HTTPStatus.OK,
                record.to_dict())

    def _round(self, method: str, body: bytes, secret: bytes | None) -> tuple[HTTPStatus, Any]:
        """Another primary's failsafe round: vouch for it, or say why not."""
        cluster = self.server.agent.cluster
        if cluster is None or secret is None or method != "POST":
            raise _Refused(HTTPStatus.NOT_FOUND, "not-found", "this agent answers no failsafe "
                           "round (its config has no cluster.peer_secret_file)")
        self._verify(method, body, secret, needs_op=False)
        try:
            return HTTPStatus.OK, cluster.answer(_params(body))
        except BadVouchRequest as exc:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", str(exc)) from None

    def _answer(self, status: HTTPStatus, answer: Any, signature: str, secret: bytes) -> None:
        data = json.dumps(answer).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if signature:
            for name, value in sign_answer(secret, signature, data).items():
                self.send_header(name, value)
        self.end_headers()
        # The sender may have stopped waiting (its timeout); what was done is journaled.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)


def _params(body: bytes) -> dict[str, Any]:
    """A POST's body: one JSON object."""
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", "the body is not JSON") from None
    if not isinstance(params, dict):
        raise _Refused(HTTPStatus.BAD_REQUEST, "malformed", "the body is a JSON object")
    return params
