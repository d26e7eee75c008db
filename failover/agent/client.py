"""Talking to a site's agent: signed requests, operation ids, polling long operations.

An operation keeps its id across retries: when an answer is lost (a timeout,
a reset connection) the same request goes again, signed afresh, and the agent
answers with what the first one did instead of doing it twice.

A client of an elected controller carries its token (``token``, asked at each
request): an agent that has seen a newer leader's refuses what would change
something, and the client raises StaleToken, which nothing retries (the
sender is deposed and stops).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from failover.agent.protocol import (
    answer_is_genuine,
    sign_request,
)
from failover.data.postgres import PgEndpoint
from failover.exceptions import ProviderError, StaleToken
from failover.leadertoken import TokenSource, no_token
from failover.watch.webhook import SIGNATURE_HEADER

PROVIDER = "agent"
POLL_EVERY = 0.2
Progress = Callable[[str], None]


def new_operation_id(kind: str) -> str:
    """A fresh operation id, readable in the agent's journal (``rejoin-3f2a...``)."""
    return f"{kind.replace('/', '-')}-{secrets.token_hex(8)}"


class AgentClient:
    """One site's agent, reached over HTTP with its secret."""

    def __init__(self, url: str, secret: bytes, *, site: str = "?", timeout: float = 5.0,
                 transport: httpx.BaseTransport | None = None,
                 token: TokenSource = no_token) -> None:
        self.url = url.rstrip("/")
        self.site = site
        self.token = token  # the sender's fencing token now (None: not an elected leader)
        self._secret = secret
        self._timeout = timeout
        self._http = httpx.Client(transport=transport, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _fail(self, message: str, code: str) -> ProviderError:
        return ProviderError(f"agent of {self.site} ({self.url}): {message}", provider=PROVIDER,
                             code=code)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                op: str | None = None, timeout: float | None = None) -> tuple[int, Any]:
        """One signed request; returns (status, JSON answer). Raises on a forged answer, and
        StaleToken when the agent has seen a newer leader's token than ours."""
        data = b"" if body is None else json.dumps(body).encode()
        token = self.token()
        headers = sign_request(self._secret, method, path, data, op, token)
        headers["Content-Type"] = "application/json"
        try:
            answer = self._http.request(method, self.url + path, content=data, headers=headers,
                                        timeout=timeout or self._timeout)
        except httpx.HTTPError as exc:
            raise self._fail(f"{type(exc).__name__}: {exc or 'no answer'}", "UNREACHABLE") \
                from exc
        if not answer_is_genuine(self._secret, headers[SIGNATURE_HEADER], answer.headers,
                                 answer.content):
            raise self._fail(f"HTTP {answer.status_code} answer not signed with the agent's "
                             "secret: something else answers there, or the secrets differ",
                             "forged-answer")
        try:
            payload = answer.json()
        except ValueError:
            raise self._fail(f"HTTP {answer.status_code} answer is not JSON", "malformed") \
                from None
        if answer.status_code >= 400:
            newest = payload.get("newest")
            if payload.get("error") == "stale-token" and token is not None \
                    and isinstance(newest, int):
                raise StaleToken(token, newest, f"the agent of {self.site} ({self.url})")
            raise self._fail(str(payload.get("message", payload)),
                             str(payload.get("error", answer.status_code)))
        return answer.status_code, payload

    def operation(self, op: str, timeout: float | None = None) -> dict[str, Any] | None:
        """The record of operation ``op`` (its state, result or error); None if never sent."""
        try:
            return dict(self.request("GET", f"/v1/operations/{op}", timeout=timeout)[1])
        except ProviderError as exc:
            if exc.code == "unknown-operation":
                return None
            raise

    def next_attempt(self, base: str, timeout: float | None = None) -> str:
        """``base-N``: the attempt running or done (to wait for, or read), else a new one.

        A resumed caller must find an operation it started before it crashed,
        not run it twice; but one that failed is tried again under a new id
        (the same id would only repeat the failure).
        """
        attempt = 0
        while True:
            record = self.operation(f"{base}-{attempt}", timeout)
            if record is None or record.get("state") != "failed":
                return f"{base}-{attempt}"
            attempt += 1

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        """What the agent says of its host."""
        return dict(self.request("GET", "/v1/status", timeout=timeout)[1])

    def run(self, kind: str, body: dict[str, Any] | None = None, *, timeout: float = 60.0,
            op: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """Run one operation to its end and return its result (ProviderError if it failed).

        A request that gets no answer is sent again under the same id until
        ``timeout``; a long operation is polled, its progress passed on.
        """
        op = op or new_operation_id(kind)
        deadline = time.monotonic() + timeout
        body = {**(body or {}), "wait": min(5.0, max(0.0, timeout - 1))}
        said = ""
        record: dict[str, Any] | None = None
        while True:
            left = deadline - time.monotonic()
            try:
                if record is None:
                    _, record = self.request("POST", f"/v1/{kind}", body, op=op,
                                             timeout=max(0.1, min(left, body["wait"] + 5)))
                else:
                    _, record = self.request("GET", f"/v1/operations/{op}",
                                             timeout=max(0.1, min(left, self._timeout)))
            except ProviderError as exc:
                if exc.code != "UNREACHABLE" or left <= 0:
                    raise
                time.sleep(min(POLL_EVERY, max(0.0, left)))
                continue  # the same id again: the agent runs it once
            assert record is not None
            if record.get("op") != op or record.get("kind") != kind:
                raise self._fail(f"answered for operation {record.get('op')} "
                                 f"({record.get('kind')}), not {op} ({kind})", "forged-answer")
            if progress is not None and record.get("progress") and record["progress"] != said:
                said = record["progress"]
                progress(said)
            if record["state"] == "ok":
                return dict(record.get("result") or {})
            if record["state"] == "failed":
                raise self._fail(f"{kind} failed: {record.get('error')}", "FAILED")
            if time.monotonic() >= deadline:
                raise self._fail(f"{kind} still running after {timeout:g}s (operation {op}; "
                                 "it goes on: poll it, or send it again with this id)",
                                 "TIMEOUT")
            time.sleep(POLL_EVERY)

    def fence(self, note: str, timeout: float = 30.0) -> dict[str, Any]:
        """Fence the site's primary."""
        return self.run("fence", {"note": note}, timeout=timeout)

    def unfence(self, original_hba: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Undo a fence (with the given original, or the fence's own sidecar)."""
        return self.run("unfence", {"original_hba": original_hba}, timeout=timeout)

    def renew_lease(self, expires_at: float, timeout: float = 2.0, *,
                    unfence: bool = False) -> dict[str, Any]:
        """Let the site hold the lease until ``expires_at`` (Unix seconds); with ``unfence``,
        also lift the fence it put up when its lease lapsed."""
        return self.run("lease", {"expires_at": expires_at, "unfence": unfence},
                        timeout=timeout)

    def release_lease(self, timeout: float = 5.0) -> dict[str, Any]:
        """Leases off for the site."""
        return self.run("lease/release", {}, timeout=timeout)

    def start_database(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the site's database and wait until it accepts connections."""
        return self.run("database/start", {"timeout": timeout}, timeout=timeout + 5)

    def stop_database(self, mode: str = "fast", timeout: float = 60.0) -> dict[str, Any]:
        """Stop the site's database (``kill``: SIGKILL, and it stays down)."""
        return self.run("database/stop", {"mode": mode}, timeout=timeout)

    def start_app(self, timeout: float = 30.0) -> dict[str, Any]:
        """Start the site's app."""
        return self.run("app/start", {}, timeout=timeout)

    def stop_app(self, timeout: float = 30.0) -> dict[str, Any]:
        """Stop the site's app."""
        return self.run("app/stop", {}, timeout=timeout)

    def restore(self, repository: str, *, target_time: str | None = None,
                role: str = "primary", primary: tuple[str, int] | None = None,
                timeout: float = 3600.0, op: str | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
        """Give the site's empty host its database from ``repository``: as a primary (to the
        end of the archive, or to ``target_time``, ISO-8601 with an offset) or as a standby
        of ``primary`` (host, port). Send it again with the same ``op`` to pick it up."""
        body: dict[str, Any] = {"repository": repository, "target_time": target_time,
                                "as": role, "timeout": timeout}
        if primary is not None:
            body["primary"] = {"host": primary[0], "port": primary[1]}
        return self.run("restore", body, timeout=timeout + 10, op=op, progress=progress)


class AgentCompute:
    """The engine's compute adapter for a site whose host runs an agent."""

    provider = PROVIDER

    def __init__(self, client: AgentClient, endpoint: Callable[[str], PgEndpoint]) -> None:
        self.client = client
        self._endpoint = endpoint  # a site's database, as the deployment's config says

    def rejoin_database(self, site: str, primary: str, *, hba: str | None = None,
                        timeout: float = 120) -> str:
        """Make ``site`` a streaming standby of ``primary``; returns how."""
        where = self._endpoint(primary)
        result = self.client.run(
            "rejoin", {"primary_host": where.host, "primary_port": where.port, "hba": hba,
                       "timeout": timeout}, timeout=timeout + 10)
        return str(result["how"])
