"""The signed webhook: what is accepted, what is refused and why, and the notice's body."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from failover.config import WatchConfig
from failover.exceptions import ConfigError
from failover.secretfiles import write_private
from failover.watch.signals import Notice
from failover.watch.store import WatchStore
from failover.watch.webhook import (
    MAX_SKEW,
    SECRET_ENV,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    SignalRefused,
    load_secret,
    parse_deadline,
    parse_signal,
    sign,
    signal_body,
    verify,
)

SECRET = b"s3cret-shared-with-the-controller"
NOW = 1_795_500_000.0
MAX_AGE = 300.0
PROVIDERS = frozenset({"aws", "hetzner"})
BODY = json.dumps({"type": "termination", "provider": "aws",
                   "deadline": "2026-11-24T12:00:00Z"}).encode()


def check(headers: dict[str, str], body: bytes = BODY, *, secret: bytes = SECRET,
          now: float = NOW, guard: ReplayGuard | None = None) -> None:
    """verify() with this file's defaults."""
    verify(secret, headers, body, now=now, max_age=MAX_AGE,
           guard=ReplayGuard() if guard is None else guard)


def refused(headers: dict[str, str], body: bytes = BODY, **kwargs: object) -> SignalRefused:
    """The refusal ``check`` raises."""
    with pytest.raises(SignalRefused) as info:
        check(headers, body, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    headers = sign(SECRET, BODY, NOW)
    assert headers[TIMESTAMP_HEADER] == str(int(NOW))
    want = hmac.new(SECRET, f"{int(NOW)}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={want}"


def test_a_good_signature_is_accepted_whatever_the_header_case() -> None:
    headers = sign(SECRET, BODY, NOW - 10)
    check(headers)
    check({k.lower(): v for k, v in headers.items()})
    check({k.upper(): v.upper() for k, v in headers.items()})  # hex digits in capitals too


def test_sign_defaults_to_now() -> None:
    check(sign(SECRET, BODY), now=time.time())


def test_unsigned_is_refused() -> None:
    assert refused({}).reason == "unsigned"
    only_time = {TIMESTAMP_HEADER: str(int(NOW))}
    refusal = refused(only_time)
    assert refusal.reason == "unsigned"
    assert str(refusal) == f"unsigned request: no {SIGNATURE_HEADER} header"
    assert refusal.http_status == 401


def test_a_wrong_secret_or_a_changed_body_is_a_bad_signature() -> None:
    headers = sign(b"another-secret", BODY, NOW)
    assert refused(headers).reason == "bad-signature"
    tampered = BODY.replace(b"aws", b"hetzner")
    refusal = refused(sign(SECRET, BODY, NOW), tampered)
    assert refusal.reason == "bad-signature"
    assert refusal.http_status == 401
    # the timestamp is signed too: moving it breaks the signature
    moved = {**sign(SECRET, BODY, NOW - 1000), TIMESTAMP_HEADER: str(int(NOW))}
    assert refused(moved).reason == "bad-signature"


@pytest.mark.parametrize("headers", [
    {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "sha256=" + "0" * 64},
    {TIMESTAMP_HEADER: "1.5e9", SIGNATURE_HEADER: "sha256=" + "0" * 64},
    {TIMESTAMP_HEADER: "\u00b2", SIGNATURE_HEADER: "sha256=" + "0" * 64},  # a digit, not 0-9
    {TIMESTAMP_HEADER: str(int(NOW)), SIGNATURE_HEADER: "0" * 64},
    {TIMESTAMP_HEADER: str(int(NOW)), SIGNATURE_HEADER: "sha1=" + "0" * 40},
    {TIMESTAMP_HEADER: str(int(NOW)), SIGNATURE_HEADER: "sha256=xyz"},
])
def test_signature_headers_of_the_wrong_shape_are_a_bad_signature(
        headers: dict[str, str]) -> None:
    refusal = refused(headers)
    assert refusal.reason == "bad-signature"
    assert "expected X-Failover-Timestamp" in str(refusal)


def test_a_stale_request_is_refused_and_the_limit_is_max_age() -> None:
    check(sign(SECRET, BODY, NOW - MAX_AGE))
    refusal = refused(sign(SECRET, BODY, NOW - MAX_AGE - 1))
    assert refusal.reason == "stale"
    assert str(refusal) == "stale request: signed 301s ago, more than the 300s allowed; " \
                           "sign it again"


def test_a_request_from_the_future_is_refused_beyond_the_skew() -> None:
    check(sign(SECRET, BODY, NOW + MAX_SKEW))
    refusal = refused(sign(SECRET, BODY, NOW + MAX_SKEW + 1))
    assert refusal.reason == "stale"
    assert "in the future" in str(refusal)


def test_a_replayed_request_is_refused() -> None:
    guard = ReplayGuard()
    headers = sign(SECRET, BODY, NOW - 5)
    check(headers, guard=guard)
    refusal = refused(headers, guard=guard, now=NOW + 1)
    assert refusal.reason == "replayed"
    assert refusal.http_status == 401
    assert refusal.to_dict() == {"reason": "replayed", "error": str(refusal)}
    # the same body signed again (a sender's retry) is a new request
    check(sign(SECRET, BODY, NOW - 4), guard=guard)
    # once stale, a replay is refused as stale (the guard no longer needs to remember it)
    assert refused(headers, guard=guard, now=NOW + MAX_AGE).reason == "stale"


def test_a_replay_is_refused_after_the_controller_restarts(tmp_path: Path) -> None:
    headers = sign(SECRET, BODY, NOW - 5)
    verify(SECRET, headers, BODY, now=NOW, max_age=MAX_AGE,
           guard=WatchStore(tmp_path / "watch.sqlite"))
    # A new controller on the same store: the captured request is still refused.
    again = WatchStore(tmp_path / "watch.sqlite")
    with pytest.raises(SignalRefused) as info:
        verify(SECRET, headers, BODY, now=NOW + 60, max_age=MAX_AGE, guard=again)
    assert info.value.reason == "replayed"


def test_a_request_sent_on_many_threads_at_once_is_accepted_once() -> None:
    guard = ReplayGuard()
    headers = sign(SECRET, BODY, NOW)
    start = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        start.wait()
        try:
            check(headers, guard=guard)
            outcome = "accepted"
        except SignalRefused as exc:
            outcome = exc.reason
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes) == ["accepted"] + ["replayed"] * 7


def test_the_replay_guard_forgets_signatures_once_they_are_stale() -> None:
    guard = ReplayGuard()
    for i in range(100):
        assert guard.first_use(f"old{i}", NOW - 200, now=NOW, max_age=MAX_AGE)
    assert guard.first_use("new", NOW, now=NOW, max_age=MAX_AGE)
    assert not guard.first_use("old7", NOW - 200, now=NOW, max_age=MAX_AGE)
    assert len(guard) == 101
    # 101 s later the old ones are older than max_age: forgotten at the next use
    assert guard.first_use("newer", NOW + 101, now=NOW + 101, max_age=MAX_AGE)
    assert len(guard) == 2
    assert guard.first_use("old7", NOW - 200, now=NOW + 101, max_age=MAX_AGE)


def test_a_signal_body_becomes_a_notice() -> None:
    body = json.dumps({"type": "termination", "provider": "hetzner",
                       "deadline": "2026-11-24T13:00:00+01:00", "text": "contract ends",
                       "id": "ticket-42"}).encode()
    notice = parse_signal(body, now=NOW, providers=PROVIDERS)
    assert notice == Notice("hetzner", datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp(),
                            "webhook", "contract ends", NOW, "ticket-42")


@pytest.mark.parametrize(("deadline", "want"), [
    (1_795_600_000, 1_795_600_000.0),
    (1_795_600_000.5, 1_795_600_000.5),
    ("+2h", NOW + 7200),
    ("2026-11-24T12:00:00Z", datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp()),
])
def test_a_deadline_is_iso_8601_unix_seconds_or_from_now(deadline: object, want: float) -> None:
    body = json.dumps({"type": "termination", "provider": "aws", "deadline": deadline})
    assert parse_signal(body.encode(), now=NOW, providers=PROVIDERS).deadline == want


def test_signal_body_is_read_back_as_the_same_notice() -> None:
    notice = Notice("aws", NOW + 3600.25, "cli", "by hand", NOW, "cli:alice@ops1")
    again = parse_signal(signal_body(notice), now=NOW, providers=PROVIDERS)
    assert again == notice
    bare = Notice("aws", NOW + 60, "webhook", received=NOW)
    assert parse_signal(signal_body(bare), now=NOW, providers=PROVIDERS) == bare


VALID = {"type": "termination", "provider": "aws", "deadline": "2026-11-24T12:00:00Z"}


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "body is not JSON"),
    (b"\xff\xfe", "body is not JSON"),
    (b"[1, 2]", "body must be a JSON object"),
    (json.dumps({**VALID, "type": None}), "type is required"),
    (json.dumps({**VALID, "type": "maintenance"}), "type 'maintenance' is unknown; known: "
                                                   "termination"),
    (json.dumps({k: v for k, v in VALID.items() if k != "provider"}), "provider is required"),
    (json.dumps({**VALID, "provider": 7}), "provider must be a string"),
    (json.dumps({**VALID, "provider": "gcp"}), "provider 'gcp' runs none of our sites; "
                                               "providers: aws, hetzner"),
    (json.dumps({k: v for k, v in VALID.items() if k != "deadline"}), "deadline is required"),
    (json.dumps({**VALID, "deadline": "tomorrow"}), "deadline: 'tomorrow' is not a deadline"),
    (json.dumps({**VALID, "deadline": "2026-11-24T12:00:00"}), "deadline: '2026-11-24T12:00:00' "
                                                               "has no time zone"),
    (json.dumps({**VALID, "deadline": True}), "deadline must be ISO 8601 with a zone or Unix"),
    (json.dumps({**VALID, "deadline": -5}), "deadline -5 is not a time"),
    (json.dumps({**VALID, "text": ["a"]}), "text must be a string"),
    (json.dumps({**VALID, "id": 42}), "id must be a string"),
    (json.dumps({**VALID, "source": "pigeon"}), "source 'pigeon' is unknown"),
    (b"{}" + b" " * 70_000, "more than 65536"),
])
def test_a_malformed_signal_is_refused_naming_the_field(body: bytes | str,
                                                         message: str) -> None:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(SignalRefused) as info:
        parse_signal(raw, now=NOW, providers=PROVIDERS)
    assert info.value.reason == "malformed"
    assert info.value.http_status == 400
    assert str(info.value).startswith("malformed signal: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("deadline", "reason", "message"), [
    ("2020-01-01T00:00Z", "past-deadline", "deadline 2020-01-01T00:00:00Z is 2519 days in the "
                                           "past"),
    (NOW - 61, "past-deadline", "is 61s in the past (more than the 60s allowed"),
    (NOW + 367 * 86400, "far-deadline", "more than a year ahead"),
    (1_795_600_000_000, "far-deadline", "seconds, not milliseconds"),
])
def test_a_deadline_in_the_past_or_years_ahead_is_refused(deadline: object, reason: str,
                                                          message: str) -> None:
    body = json.dumps({**VALID, "deadline": deadline}).encode()
    with pytest.raises(SignalRefused) as info:
        parse_signal(body, now=NOW, providers=PROVIDERS)
    assert info.value.reason == reason
    assert info.value.http_status == 400
    assert message in str(info.value)


def test_a_deadline_just_past_is_clock_skew_and_taken() -> None:
    for deadline in (NOW - 59, NOW, "now"):
        body = json.dumps({**VALID, "deadline": deadline}).encode()
        assert parse_signal(body, now=NOW, providers=PROVIDERS).provider == "aws"


@pytest.mark.parametrize(("text", "want"), [
    ("+90s", NOW + 90), ("+30m", NOW + 1800), ("+2h", NOW + 7200), ("+1d", NOW + 86400),
    ("+1.5h", NOW + 5400), ("now", NOW),
    ("2026-11-24T12:00:00Z", datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp()),
    ("2026-11-24 13:00+01:00", datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp()),
])
def test_parse_deadline(text: str, want: float) -> None:
    assert parse_deadline(text, NOW) == want


def test_parse_deadline_refuses_a_time_without_a_zone_and_says_how() -> None:
    with pytest.raises(ValueError, match=r"has no time zone: add one, e\.g\. "
                                         r"2026-11-24T12:00Z for UTC"):
        parse_deadline("2026-11-24T12:00", NOW)
    with pytest.raises(ValueError, match=r"e\.g\. 2026-11-24T00:00:00Z"):
        parse_deadline("2026-11-24", NOW)
    with pytest.raises(ValueError, match=r"or a time from now \(\+90s"):
        parse_deadline("-2h", NOW)


def test_the_secret_comes_from_the_environment_first(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "webhook.secret"
    write_private(path, "from-the-file\n")
    config = WatchConfig(webhook_secret_file=path)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert load_secret(config) == b"from-the-file"
    monkeypatch.setenv(SECRET_ENV, "from-the-environment")
    assert load_secret(config) == b"from-the-environment"


def test_a_missing_empty_or_readable_secret_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"no webhook secret: set \$FAILOVER_WEBHOOK_SECRET "
                                          r"or watch.webhook_secret_file"):
        load_secret(WatchConfig())
    empty = tmp_path / "empty"
    write_private(empty, "\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_secret(WatchConfig(webhook_secret_file=empty))
    loose = tmp_path / "loose"
    loose.write_text("secret")
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_secret(WatchConfig(webhook_secret_file=loose))
