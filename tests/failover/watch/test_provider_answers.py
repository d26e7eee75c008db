"""The provider-API registry and how each kind sorts its answers, over hand-built errors.

No server: the errors are built as the clients raise them (what a real EC2
and a real hcloud return is in test_providers.py, against a lab).
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from botocore.exceptions import ClientError
from hcloud import APIException

from failover.watch.providers import (
    KINDS,
    ApiAnswer,
    ApiSettings,
    Ec2ApiConfig,
    HcloudApiConfig,
    check_api,
)
from failover.watch.providers.ec2 import ec2_error
from failover.watch.providers.hcloud import hcloud_error


def test_the_union_the_config_accepts_is_exactly_the_registered_kinds() -> None:
    assert set(get_args(ApiSettings)) == {kind.settings for kind in KINDS.values()}
    assert {tag: kind.call for tag, kind in KINDS.items()} == {
        "ec2": "EC2 DescribeInstances", "hcloud": "hcloud GET /servers"}


def test_each_kind_is_asked_by_its_own_checker(tmp_path: Path) -> None:
    # Credentials that cannot be read: each kind says so in its own words, asking nothing.
    ec2 = check_api(Ec2ApiConfig(kind="ec2", credentials_file=tmp_path / "none"), 1.0)
    hcloud = check_api(HcloudApiConfig(kind="hcloud", token_file=tmp_path / "none"), 1.0)
    assert (ec2.status, hcloud.status) == ("down", "down")
    assert ec2.detail.startswith("EC2 DescribeInstances: not asked: cannot read")
    assert hcloud.detail.startswith("hcloud GET /servers: not asked: cannot read")


def _client_error(code: str | None, status: int) -> ClientError:
    error = {"Code": code, "Message": "the reason"} if code else {}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "DescribeInstances")


@pytest.mark.parametrize(("code", "status", "answer"), [
    ("AuthFailure", 401, ApiAnswer(
        "refused", "EC2 DescribeInstances: AuthFailure (credentials refused)", "AuthFailure")),
    ("Blocked", 403, ApiAnswer(
        "refused", "EC2 DescribeInstances: Blocked (credentials refused)", "Blocked")),
    ("RequestLimitExceeded", 503, ApiAnswer(
        "down", "EC2 DescribeInstances: RequestLimitExceeded (throttled)",
        "RequestLimitExceeded")),
    (None, 429, ApiAnswer("down", "EC2 DescribeInstances: HTTP 429 (throttled)", None)),
    (None, 502, ApiAnswer(
        "down", "EC2 DescribeInstances: HTTP 502 (server error, HTTP 502)", None)),
])
def test_ec2_errors_are_sorted_into_refused_and_down(
    code: str | None, status: int, answer: ApiAnswer,
) -> None:
    assert ec2_error(_client_error(code, status)) == answer


def test_an_ec2_error_of_no_known_kind_is_down_with_its_message() -> None:
    answer = ec2_error(_client_error("InvalidParameterValue", 400))
    assert (answer.status, answer.code) == ("down", "InvalidParameterValue")
    assert answer.detail.startswith("EC2 DescribeInstances: InvalidParameterValue: ")
    assert "the reason" in answer.detail


@pytest.mark.parametrize(("code", "answer"), [
    ("forbidden", ApiAnswer("refused", "hcloud GET /servers: forbidden (credentials refused "
                            "or account blocked)", "forbidden")),
    (401, ApiAnswer("refused", "hcloud GET /servers: HTTP 401 (credentials refused or "
                    "account blocked)", None)),
    ("rate_limit_exceeded", ApiAnswer(
        "down", "hcloud GET /servers: rate_limit_exceeded (throttled)", "rate_limit_exceeded")),
    (503, ApiAnswer("down", "hcloud GET /servers: HTTP 503 (server error)", None)),
    ("invalid_input", ApiAnswer(
        "down", "hcloud GET /servers: invalid_input: the reason (invalid_input)",
        "invalid_input")),
])
def test_hcloud_errors_are_sorted_into_refused_and_down(
    code: int | str, answer: ApiAnswer,
) -> None:
    assert hcloud_error(APIException(code, "the reason", None)) == answer
