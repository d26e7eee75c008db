"""The agent's HTTP API in process: who it refuses, and operations that run once per id.

The agent's database is down here; the lease and status need none.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from failover.agent.agent import Agent
from failover.agent.protocol import (
    NONCE_HEADER,
    OPERATION_HEADER,
    agent_secret,
    sign_request,
    signed_request,
)
from failover.exceptions import ConfigError, ProviderError
from failover.secretfiles import write_private
from failover.watch.webhook import SIGNATURE_HEADER, sign
from tests.failover.agent.served import SECRET, Served

LEASE_OP = "lease-test-0001"


def post(served: Served, path: str, body: bytes, *, op: str | None = LEASE_OP,
         headers: dict[str, str] | None = None) -> httpx.Response:
    """A POST with the given headers (signed properly when none are given)."""
    sent = {"Content-Type": "application/json"}
    sent.update(headers if headers is not None else sign_request(SECRET, "POST", path, body, op))
    if op is not None:
        sent[OPERATION_HEADER] = op
    return httpx.post(served.url + path, content=body, headers=sent, timeout=5)


def lease_body(seconds: float = 60.0) -> bytes:
    return json.dumps({"expires_at": time.time() + seconds}).encode()


def signed_at(timestamp: float, body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    """Headers that sign a POST /v1/lease at ``timestamp`` (a clock of the sender's)."""
    nonce = "0123456789abcdef"
    headers = sign(secret, signed_request("POST", "/v1/lease", body, nonce=nonce, op=LEASE_OP),
                   timestamp=timestamp)
    return {**headers, NONCE_HEADER: nonce}


def refusal(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The one line of JSON a refusal carries, checked; returns it."""
    assert answer.status_code == status, answer.text
    assert answer.text.count("\n") == 1 and answer.text.endswith("\n")
    said = answer.json()
    assert set(said) == {"error", "message"} and said["message"]
    return dict(said)


# -- who is refused ----------------------------------------------------------------


def test_unsigned_forged_stale_and_early_requests_are_refused(served: Served) -> None:
    body = lease_body()
    now = time.time()
    cases = {
        "unsigned": {},
        "forged": signed_at(now, body, secret=b"not the agent's secret"),
        "stale": signed_at(now - 60, body),
        "ahead of the clock": signed_at(now + 60, body),
    }
    for case, headers in cases.items():
        said = refusal(post(served, "/v1/lease", body, headers=headers), 401)
        expected = {"unsigned": "unsigned", "forged": "bad-signature"}.get(case, "stale")
        assert said["error"] == expected, case
    assert "in the future" in said["message"]
    assert served.agent.lease.view().state == "off"  # nothing ran
    assert served.agent.journal.get(LEASE_OP) is None


def test_a_replayed_request_is_refused(served: Served) -> None:
    body = lease_body()
    headers = sign_request(SECRET, "POST", "/v1/lease", body, LEASE_OP)
    assert post(served, "/v1/lease", body, headers=headers).status_code == 200
    assert refusal(post(served, "/v1/lease", body, headers=headers), 401)["error"] == "replayed"
    # Under another operation id it is no longer the request that was signed: the id
    # is signed too, so an old operation's answer cannot be passed off as a new one's.
    swapped = post(served, "/v1/lease", body, headers=headers, op="lease-test-0002")
    assert refusal(swapped, 401)["error"] == "bad-signature"
    assert served.agent.journal.get("lease-test-0002") is None


def test_a_signed_request_goes_nowhere_but_where_it_was_signed_for(served: Served) -> None:
    body = b"{}"
    headers = sign_request(SECRET, "POST", "/v1/lease/release", body, LEASE_OP)
    said = refusal(post(served, "/v1/unfence", body, headers=headers), 401)
    assert said["error"] == "bad-signature"


def test_a_post_without_a_good_operation_id_is_a_bad_request(served: Served) -> None:
    for op in (None, "short", "no spaces allowed", "x" * 65):
        said = refusal(post(served, "/v1/lease", lease_body(), op=op), 400)
        assert said["error"] == "no-operation-id", op
    assert served.agent.lease.view().state == "off"


def test_a_malformed_body_is_a_bad_request(served: Served) -> None:
    for body in (b"{not json", b"[1, 2]", b'{"expires_at": 1, "wait": 999}'):
        said = refusal(post(served, "/v1/lease", body), 400)
        assert said["error"] == "malformed", body


def test_unknown_paths_are_not_found(served: Served) -> None:
    said = refusal(post(served, "/v1/reboot", b"{}"), 404)
    assert said == {"error": "not-found", "message": "no POST /v1/reboot"}
    client = served.client()
    try:
        for path in ("/v1/nothing", "/v1/operations/never-sent-1"):
            with pytest.raises(ProviderError) as missing:
                client.request("GET", path)
            assert missing.value.code in ("not-found", "unknown-operation"), path
    finally:
        client.close()


def test_status_answers_signed_with_the_database_down(served: Served) -> None:
    client = served.client()
    try:
        status = client.status()
        again = client.status()  # asked twice in a row: two requests, not a replay
    finally:
        client.close()
    assert status["site"] == "aws" and status["role"] == "down"
    assert status["fenced"] is None  # no data dir: nothing to say
    assert status["lease"] == {"state": "off", "expires_in": None}
    assert status["children"]["postgres"]["pid"] is None
    assert status["error"]
    assert again["role"] == "down"


def test_an_answer_signed_with_another_secret_is_not_believed(served: Served) -> None:
    client = served.client(secret=b"a secret the agent does not have")
    try:
        with pytest.raises(ProviderError) as forged:
            client.status()
    finally:
        client.close()
    assert forged.value.code == "forged-answer"


# -- operations run once per id -----------------------------------------------------


def count_renewals(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record every renewal the agent runs (the real one runs too)."""
    calls: list[dict[str, Any]] = []
    renew = agent.renew_lease

    def counted(body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body)
        return renew(body)

    monkeypatch.setattr(agent, "renew_lease", counted)
    return calls


def test_the_same_operation_id_runs_once_and_answers_the_first_result(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_renewals(served.agent, monkeypatch)
    body = lease_body()
    first = post(served, "/v1/lease", body)
    again = post(served, "/v1/lease", body)  # the same request, signed anew: not a replay
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["state"] == "ok" and first.json()["result"]["state"] == "held"
    assert len(calls) == 1


def test_the_same_operation_id_with_another_body_or_kind_is_a_conflict(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_renewals(served.agent, monkeypatch)
    assert post(served, "/v1/lease", lease_body(60)).status_code == 200
    said = refusal(post(served, "/v1/lease", lease_body(120)), 409)
    assert said["error"] == "operation-conflict" and LEASE_OP in said["message"]
    said = refusal(post(served, "/v1/lease/release", b"{}"), 409)
    assert said["error"] == "operation-conflict"
    assert len(calls) == 1
    assert served.agent.lease.view().state == "held"  # the release never ran


class LosesFirstAnswer(httpx.BaseTransport):
    """A network that delivers the first POST but loses the agent's answer to it."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self._inner.handle_request(request)
        if request.method == "POST" and not self.lost:
            answer.read()  # the agent answered: it ran the operation
            answer.close()
            self.lost += 1
            raise httpx.ReadTimeout("the answer was lost on the way", request=request)
        return answer

    def close(self) -> None:
        self._inner.close()


def test_an_operation_retried_after_its_answer_was_lost_runs_once(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_renewals(served.agent, monkeypatch)
    network = LosesFirstAnswer()
    client = served.client()
    client._http = httpx.Client(transport=network, timeout=5)  # the network between them
    expires_at = time.time() + 60
    try:
        result = client.run("lease", {"expires_at": expires_at}, op="lease-retried-1",
                            timeout=10)
    finally:
        client.close()
    assert network.lost == 1
    assert len(calls) == 1
    assert result["state"] == "held" and result["regained"] is False
    record = served.agent.journal.get("lease-retried-1")
    assert record is not None and record.state == "ok"
    assert record.params == {"expires_at": expires_at}


def test_a_failed_operation_answers_its_error(served: Served) -> None:
    client = served.client()
    try:
        with pytest.raises(ProviderError, match=r"lease failed: .*expires_at must be"):
            client.run("lease", {"expires_at": "soon"}, timeout=5)
    finally:
        client.close()


def test_the_client_signs_every_request_it_sends(served: Served) -> None:
    seen: list[str] = []

    def look(request: httpx.Request) -> None:
        seen.append(request.headers[SIGNATURE_HEADER])

    client = served.client()
    client._http = httpx.Client(event_hooks={"request": [look]}, timeout=5)
    try:
        client.renew_lease(time.time() + 60)
        client.release_lease()
        client.status()
    finally:
        client.close()
    assert len(seen) == len(set(seen)) == 3


def test_a_negative_length_is_refused_before_anything_is_read(served: Served) -> None:
    url = httpx.URL(served.url)
    with socket.create_connection((url.host, url.port or 80), timeout=5) as sock:
        sock.sendall(b"POST /v1/lease HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
        answer = b""
        while b"bad Content-Length" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"bad Content-Length" in answer


def test_a_secret_too_short_to_sign_with_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.secret"
    write_private(short, "abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        agent_secret(short)
