"""How requests to an agent and its answers are signed: method, path and body, and the
request an answer belongs to."""

from __future__ import annotations

import time

import pytest

from failover.agent.protocol import (
    NONCE_HEADER,
    OPERATION_HEADER,
    answer_is_genuine,
    sign_answer,
    sign_request,
    signed_request,
)
from failover.watch.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    SignalRefused,
    verify,
)

SECRET = b"protocol-secret"
BODY = b'{"expires_at": 1900000000}'


def check(headers: dict[str, str], method: str, path: str, body: bytes,
          secret: bytes = SECRET) -> None:
    """The agent's check of a request (as its server does it)."""
    signed = signed_request(method, path, body, nonce=headers.get(NONCE_HEADER, ""),
                            op=headers.get(OPERATION_HEADER, ""))
    verify(secret, headers, signed, now=time.time(), max_age=30, guard=ReplayGuard(),
           whose="the agent's")


def test_a_request_is_signed_over_method_path_and_body() -> None:
    headers = sign_request(SECRET, "POST", "/v1/lease", BODY)
    check(headers, "POST", "/v1/lease", BODY)  # accepted as sent

    for method, path, body in (("POST", "/v1/unfence", BODY),  # the same body elsewhere
                               ("GET", "/v1/lease", BODY),
                               ("POST", "/v1/lease", BODY + b" ")):
        with pytest.raises(SignalRefused) as refused:
            check(headers, method, path, body)
        assert refused.value.reason == "bad-signature", (method, path, body)
    with pytest.raises(SignalRefused, match="bad signature"):
        check(headers, "POST", "/v1/lease", BODY, secret=b"another site's secret")
    with pytest.raises(SignalRefused, match="bad signature"):  # the nonce is signed too
        check({**headers, NONCE_HEADER: "0" * 32}, "POST", "/v1/lease", BODY)


def test_two_equal_requests_in_one_second_are_two_signatures() -> None:
    first, second = (sign_request(SECRET, "GET", "/v1/status", b"") for _ in range(2))
    assert first[SIGNATURE_HEADER] != second[SIGNATURE_HEADER]
    guard = ReplayGuard()
    for headers in (first, second):  # a poll, a status asked again: neither is a replay
        verify(SECRET, headers, signed_request("GET", "/v1/status", b"",
                                               nonce=headers[NONCE_HEADER]),
               now=time.time(), max_age=30, guard=guard)


def test_the_method_is_signed_in_upper_case() -> None:
    assert (signed_request("post", "/v1/fence", b"{}", nonce="n")
            == signed_request("POST", "/v1/fence", b"{}", nonce="n"))


def test_an_answer_is_genuine_only_for_its_request_and_body() -> None:
    request = sign_request(SECRET, "POST", "/v1/fence", b"{}")[SIGNATURE_HEADER]
    other = sign_request(SECRET, "POST", "/v1/unfence", b"{}")[SIGNATURE_HEADER]
    answer = b'{"state": "ok", "result": {"fenced": true}}\n'
    headers = sign_answer(SECRET, request, answer)

    assert answer_is_genuine(SECRET, request, headers, answer)
    assert not answer_is_genuine(SECRET, request, headers, answer.replace(b"true", b"false"))
    assert not answer_is_genuine(SECRET, other, headers, answer)  # another request's answer
    assert not answer_is_genuine(b"not the agent's", request, headers, answer)
    assert not answer_is_genuine(SECRET, request, {}, answer)  # unsigned
    assert not answer_is_genuine(SECRET, request, {**headers, TIMESTAMP_HEADER: "soon"}, answer)
    changed_stamp = {**headers, TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) + 1)}
    assert not answer_is_genuine(SECRET, request, changed_stamp, answer)
