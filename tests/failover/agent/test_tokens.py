"""Leaders' fencing tokens at the agent: signed, kept across a restart, a stale one refused.

The agent's database is down here: the lease and status need none, and a
lease released or not is what a refused request must leave as it was.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from failover.agent.config import AgentConfig
from failover.agent.journal import AgentJournal
from failover.agent.protocol import (
    NONCE_HEADER,
    OPERATION_HEADER,
    TOKEN_HEADER,
    sign_request,
    signed_request,
)
from failover.agent.tokens import changes
from failover.engine.executor import transient
from failover.exceptions import ProviderError, StaleToken
from failover.watch.webhook import ReplayGuard, SignalRefused, sign, verify
from tests.conftest import free_port
from tests.failover.agent.served import SECRET, Served, agent_config


class Leader:
    """A token source the test sets, as a controller's election would."""

    def __init__(self, token: int | None) -> None:
        self.token = token

    def __call__(self) -> int | None:
        return self.token


@pytest.fixture
def config(tmp_path: Path, request: pytest.FixtureRequest) -> AgentConfig:
    """The agent's config; ``require_token`` as the test's parameter says (default off)."""
    required = bool(getattr(request, "param", False))
    return agent_config(tmp_path / "agent", free_port()).model_copy(
        update={"require_token": required})


def send(served: Served, method: str, path: str, body: bytes = b"", *,
         token: int | None, op: str | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    """A request signed properly with ``token`` (headers given override the signed ones)."""
    if method == "POST" and op is None:
        op = f"test-{time.monotonic_ns()}"
    sent = {**sign_request(SECRET, method, path, body, op, token), **(headers or {})}
    return httpx.request(method, served.url + path, content=body, headers=sent, timeout=5)


def lease_body(seconds: float = 60.0) -> bytes:
    return json.dumps({"expires_at": time.time() + seconds}).encode()


def one_line_refusal(answer: httpx.Response, status: int, code: str) -> str:
    """The refusal's message, checked to be one line of JSON with ``code``."""
    assert answer.status_code == status, answer.text
    assert answer.text.count("\n") == 1 and answer.text.endswith("\n")
    said = answer.json()
    assert said["error"] == code
    return str(said["message"])


# -- the signature --------------------------------------------------------------------


def test_the_token_is_signed_and_a_tokenless_request_is_signed_as_before() -> None:
    headers = sign_request(SECRET, "POST", "/v1/fence", b"{}", "fence-00000001", 41)
    assert headers[TOKEN_HEADER] == "41"

    def check(token: str) -> None:
        signed = signed_request("POST", "/v1/fence", b"{}", nonce=headers[NONCE_HEADER],
                                op=headers[OPERATION_HEADER], token=token)
        verify(SECRET, headers, signed, now=time.time(), max_age=30, guard=ReplayGuard(),
               whose="the agent's")

    for altered in ("42", ""):  # raised in transit, or taken off
        with pytest.raises(SignalRefused) as refused:
            check(altered)
        assert refused.value.reason == "bad-signature", altered
    check("41")  # as sent
    # Without a token the signed bytes are the ones of the release before tokens.
    assert signed_request("GET", "/v1/status", b"", nonce="ab", op="") == b"GET /v1/status ab \n"
    assert TOKEN_HEADER not in sign_request(SECRET, "GET", "/v1/status", b"")


def test_a_raised_token_header_is_refused_as_a_bad_signature(served: Served) -> None:
    body = lease_body()
    signed = sign_request(SECRET, "POST", "/v1/lease", body, "lease-tok-0001", 6)
    answer = send(served, "POST", "/v1/lease", body, token=6, op="lease-tok-0001",
                  headers={**signed, TOKEN_HEADER: "60"})
    assert one_line_refusal(answer, 401, "bad-signature")
    assert served.agent.journal.newest_token() is None  # an unsigned token moves nothing
    assert served.agent.lease.view().state == "off"


# -- the newest token, kept -------------------------------------------------------------


def test_the_newest_token_is_kept_across_a_reopen(tmp_path: Path) -> None:
    journal = AgentJournal(tmp_path / "agent.sqlite")
    assert journal.newest_token() is None
    assert journal.newest_token(7) == 7
    assert journal.newest_token(5) == 7  # an older one does not lower it
    journal.close()
    reopened = AgentJournal(tmp_path / "agent.sqlite")
    try:
        assert reopened.newest_token() == 7
        assert reopened.newest_token(9) == 9
    finally:
        reopened.close()


# -- stale requests refused, newer ones raise the floor -----------------------------------


def test_a_deposed_leaders_request_is_refused_and_does_nothing(served: Served) -> None:
    leader = Leader(7)
    client = served.client()
    client.token = leader
    try:
        assert client.renew_lease(time.time() + 60)["state"] == "held"
        answer = send(served, "POST", "/v1/lease/release", b"{}", token=6)
        message = one_line_refusal(answer, 409, "stale-token")
        assert message == ("token 6 is older than 7, the newest this agent has seen: a "
                           "deposed leader's request; nothing was done")
        assert answer.json()["newest"] == 7
        assert served.agent.lease.view().state == "held"  # not released

        leader.token = 6
        with pytest.raises(StaleToken, match=r"^token 6 is older than 7, the newest the agent "
                           r"of aws \(http://[0-9.:]+\) has seen") as stale:
            client.release_lease()
        assert (stale.value.token, stale.value.newest) == (6, 7)
        assert served.agent.lease.view().state == "held"

        leader.token = 8  # a newer leader: accepted, and the floor goes up
        assert client.release_lease()["state"] == "off"
        assert client.status()["newest_token"] == 8
    finally:
        client.close()


def test_a_newer_token_on_a_read_raises_the_floor_and_a_stale_read_is_answered(
        served: Served) -> None:
    assert send(served, "GET", "/v1/status", token=9).status_code == 200
    assert send(served, "GET", "/v1/status", token=3).json()["newest_token"] == 9
    answer = send(served, "POST", "/v1/lease", lease_body(), token=8)
    assert "token 8 is older than 9" in one_line_refusal(answer, 409, "stale-token")
    assert served.agent.lease.view().state == "off"


def test_an_operation_sent_again_by_a_deposed_leader_is_refused_not_answered(
        served: Served) -> None:
    op, body = "lease-tok-0002", lease_body()
    first = send(served, "POST", "/v1/lease", body, token=7, op=op)
    assert first.status_code == 200 and first.json()["state"] == "ok"
    send(served, "GET", "/v1/status", token=8)  # the new leader's first look
    again = send(served, "POST", "/v1/lease", body, token=7, op=op)
    # Answered with the first attempt's "ok", the deposed leader would go on to its next step.
    one_line_refusal(again, 409, "stale-token")
    polled = send(served, "GET", f"/v1/operations/{op}", token=7)  # a read: answered
    assert polled.status_code == 200 and polled.json()["state"] == "ok"


def test_a_request_without_a_token_goes_through_as_before(served: Served) -> None:
    assert send(served, "GET", "/v1/status", token=8).status_code == 200
    client = served.client()  # no token: a lone controller
    try:
        assert client.renew_lease(time.time() + 60)["state"] == "held"
        assert client.release_lease()["state"] == "off"
    finally:
        client.close()
    assert served.agent.journal.newest_token() == 8


@pytest.mark.parametrize("config", [True], indirect=True)
def test_an_agent_that_requires_a_token_refuses_a_change_without_one(served: Served) -> None:
    assert served.agent.config.require_token
    answer = send(served, "POST", "/v1/lease", lease_body(), token=None)
    message = one_line_refusal(answer, 428, "token-required")
    assert "carries none; nothing was done" in message and "\n" not in message
    assert served.agent.lease.view().state == "off"
    assert send(served, "GET", "/v1/status", token=None).status_code == 200  # a read
    assert send(served, "POST", "/v1/lease", lease_body(), token=1).status_code == 200
    assert served.agent.lease.view().state == "held"


def test_a_malformed_or_doubled_token_is_a_bad_request(served: Served) -> None:
    for bad in ("-1", "7.0", "0x10", "1" * 19):
        body = lease_body()
        op = f"lease-bad-{len(bad)}-{bad.count('1')}"
        nonce = "0123456789abcdef"
        signed = signed_request("POST", "/v1/lease", body, nonce=nonce, op=op, token=bad)
        headers = {**sign(SECRET, signed), NONCE_HEADER: nonce, OPERATION_HEADER: op,
                   TOKEN_HEADER: bad}
        answer = httpx.post(served.url + "/v1/lease", content=body, headers=headers, timeout=5)
        assert "fencing token is 1 to 18 decimal digits" in one_line_refusal(
            answer, 400, "malformed"), bad
    doubled = sign_request(SECRET, "GET", "/v1/status", b"", None, 5)
    answer = httpx.get(served.url + "/v1/status", timeout=5,
                       headers=[*doubled.items(), (TOKEN_HEADER, "9")])
    assert "more than one X-Failover-Token" in one_line_refusal(answer, 400, "malformed")
    assert served.agent.lease.view().state == "off"
    assert served.agent.journal.newest_token() is None


def test_a_stale_token_is_not_a_provider_error_the_engine_would_retry() -> None:
    stale = StaleToken(6, 7, "this agent")
    assert not isinstance(stale, ProviderError)
    assert not transient(stale)


def test_every_post_but_a_read_counts_as_a_change() -> None:
    for kind in ("fence", "unfence", "lease", "lease/release", "rejoin", "database/start",
                 "database/stop", "app/start", "app/stop", "restore", "backup", "new-kind"):
        assert changes("POST", f"/v1/{kind}"), kind
    assert not changes("POST", "/v1/backup/info")
    assert not changes("GET", "/v1/status") and not changes("GET", "/v1/operations/x")
