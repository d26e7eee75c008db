"""``failover signal termination`` against a small real HTTP server that plays the controller.

The server (on 127.98.1.1) checks signatures with the real ``verify`` and
reads bodies with the real ``parse_signal``, and answers as ``failover watch``
does: 202 ``{"notice": ..., "new": ...}``, 401/403 for refused signatures, 400
for malformed bodies. The real controller is tested with its own API.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from failover.cli import cli
from failover.secretfiles import write_private
from failover.watch.signals import Notice
from failover.watch.webhook import (
    SECRET_ENV,
    ReplayGuard,
    SignalRefused,
    parse_signal,
    verify,
)

CONTROLLER = "127.98.1.1"
NOWHERE = "127.98.1.2"  # a port bound there but never listening refuses connections
SECRET = "the-controller-secret"


@dataclass
class FakeController:
    """What the test server heard: the notices it kept, and what it refused."""

    secret: bytes
    url: str = ""
    notices: dict[str, Notice] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock_ahead: float = 0.0  # seconds this controller's clock runs ahead of the sender's

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Status and JSON for one POST /v1/signals, as failover watch answers it."""
        now = time.time() + self.clock_ahead
        try:
            verify(self.secret, headers, body, now=now, max_age=300, guard=self.guard)
            notice = parse_signal(body, now=now, providers={"aws", "hetzner"})
        except SignalRefused as refusal:
            with self.lock:
                self.refused.append(refusal.reason)
            return refusal.http_status, refusal.to_dict()
        with self.lock:
            new = notice.id not in self.notices
            self.notices.setdefault(notice.id, notice)
        return 202, {"notice": notice.to_dict(), "new": new}


def _handler(controller: FakeController) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/signals":
                status, answer = 404, {"detail": "Not Found"}
            else:
                status, answer = controller.answer(dict(self.headers.items()), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # pytest shows what matters

    return Handler


@pytest.fixture
def controller() -> Iterator[FakeController]:
    """The test server, on a free port of 127.98.1.1; shut down whatever happened."""
    fake = FakeController(SECRET.encode())
    server = ThreadingHTTPServer((CONTROLLER, 0), _handler(fake))
    fake.url = f"http://{CONTROLLER}:{server.server_address[1]}"
    # A short poll interval: shutdown() waits for the loop to look.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def write_config(tmp_path: Path, listen: str, secret: str = SECRET) -> Path:
    """A minimal failover.yaml whose controller listens at ``listen``, with a 0600 secret."""
    def site(n: int, provider: str) -> dict[str, Any]:
        address = f"127.98.2.{n}"
        return {"provider": provider, "address": address, "app_url": f"http://{address}:8080",
                "database": {"host": address}, "objects": {"bucket": "media"}}

    data = {
        "sites": {"aws": site(1, "aws"), "hetzner": site(2, "hetzner")},
        "dns_providers": {"bind9": {"kind": "rfc2136", "server": "127.98.2.3",
                                    "zone": "test.example.", "tsig_key_file": "tsig.key"}},
        "dns": {"zone": "test.example.", "records": [{"name": "app"}]},
        "watch": {"listen": listen, "webhook_secret_file": "webhook.secret"},
    }
    path = tmp_path / "failover.yaml"
    path.write_text(yaml.safe_dump(data))
    write_private(tmp_path / "webhook.secret", secret + "\n")
    # Files a configuration names must exist (else a ConfigError); the CLI never reads it.
    write_private(tmp_path / "tsig.key",
                  'key "lab" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    return path


@pytest.fixture(autouse=True)
def _no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # $FAILOVER_WEBHOOK_SECRET would win over the file these tests write.
    monkeypatch.delenv(SECRET_ENV, raising=False)


def send(config: Path, *args: str) -> Result:
    """Run ``failover signal termination`` with ``args`` against ``config``."""
    return CliRunner().invoke(cli, ["signal", "termination", "--config", str(config), *args])


def listen_of(controller: FakeController) -> str:
    """The host:port of the test server."""
    return controller.url.removeprefix("http://")


def test_a_notice_is_signed_delivered_and_known_the_second_time(
        controller: FakeController, tmp_path: Path) -> None:
    config = write_config(tmp_path, listen_of(controller))
    before = time.time()

    deadline = datetime.fromtimestamp(int(before) // 60 * 60 + 2 * 86400, UTC)
    first = send(config, "--provider", "hetzner", "--deadline", f"{deadline:%Y-%m-%dT%H:%M}Z",
                 "--text", "letter of 23 Nov")

    assert first.exit_code == 0, first.output
    [notice] = controller.notices.values()
    assert (notice.provider, notice.source, notice.text) == ("hetzner", "cli",
                                                             "letter of 23 Nov")
    assert notice.deadline == deadline.timestamp()
    assert notice.reference.startswith("cli:")
    assert before <= notice.received <= time.time()
    assert first.stdout == (f"notice {notice.id} (hetzner, deadline "
                            f"{deadline:%Y-%m-%d %H:%M:%S} UTC) delivered to failover watch at "
                            f"{controller.url}: new\n")

    again = send(config, "--provider", "hetzner", "--deadline", deadline.isoformat(), "--json",
                 "--text", "sent again by someone else")
    assert again.exit_code == 0, again.output
    answer = json.loads(again.stdout)
    assert answer["new"] is False
    assert answer["notice"]["id"] == notice.id  # same provider and deadline: the same notice
    assert answer["url"] == controller.url
    assert controller.refused == []


@pytest.mark.parametrize(("deadline", "says"), [
    ("2020-01-01T00:00Z", "days in the past"),
    ("+400d", "more than a year ahead"),
])
def test_a_deadline_long_past_or_years_ahead_is_refused_before_sending(
        controller: FakeController, tmp_path: Path, deadline: str, says: str) -> None:
    config = write_config(tmp_path, listen_of(controller))
    result = send(config, "--provider", "aws", "--deadline", deadline)
    assert result.exit_code == 2
    assert says in result.stderr
    assert controller.notices == {} and controller.refused == []  # nothing was sent


def test_a_relative_deadline_counts_from_now(controller: FakeController,
                                             tmp_path: Path) -> None:
    config = write_config(tmp_path, listen_of(controller))
    before = time.time()
    result = send(config, "--provider", "aws", "--deadline", "+2h")
    assert result.exit_code == 0, result.output
    [notice] = controller.notices.values()
    assert before + 7200 <= notice.deadline <= time.time() + 7200


def test_an_unknown_provider_is_refused_naming_the_sites_providers(
        controller: FakeController, tmp_path: Path) -> None:
    result = send(write_config(tmp_path, listen_of(controller)),
                  "--provider", "gcp", "--deadline", "+1h")
    assert result.exit_code == 2
    assert result.stderr == ("failover: error: no site runs at provider 'gcp'; the sites' "
                             "providers: aws, hetzner\n")
    assert controller.notices == {} and controller.refused == []


def test_a_deadline_without_a_zone_is_a_usage_error(controller: FakeController,
                                                    tmp_path: Path) -> None:
    result = send(write_config(tmp_path, listen_of(controller)),
                  "--provider", "aws", "--deadline", "2026-11-24T12:00")
    assert result.exit_code == 2
    assert "Invalid value for --deadline: '2026-11-24T12:00' has no time zone" in result.stderr
    assert controller.notices == {}


def test_nothing_listening_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as bound:
        bound.bind((NOWHERE, 0))  # bound, never listening: the connection is refused
        listen = f"{NOWHERE}:{bound.getsockname()[1]}"
        result = send(write_config(tmp_path, listen), "--provider", "aws", "--deadline", "+1h")
    assert result.exit_code == 1
    assert result.stderr == (f"failover: error: failover watch is not answering at "
                             f"http://{listen}: start it (failover watch) and send the notice "
                             "again\n")
    assert result.stdout == ""


def test_a_wrong_secret_is_refused_with_the_controllers_reason(
        controller: FakeController, tmp_path: Path) -> None:
    config = write_config(tmp_path, listen_of(controller), secret="not-the-controller-secret")
    result = send(config, "--provider", "aws", "--deadline", "+1h")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"failover: error: failover watch at {controller.url} refused the notice (HTTP 401 "
        "bad-signature: bad signature: not signed with this controller's secret")
    assert result.stderr.endswith("this machine's webhook secret must be the controller's\n")
    assert result.stderr.count("\n") == 1
    assert controller.refused == ["bad-signature"]
    assert controller.notices == {}


def test_a_stale_signature_points_at_the_clock_not_the_secret(
        controller: FakeController, tmp_path: Path) -> None:
    controller.clock_ahead = 3600.0  # this machine's clock is an hour behind
    result = send(write_config(tmp_path, listen_of(controller)), "--provider", "aws",
                  "--deadline", "+2h")
    assert result.exit_code == 1
    assert "refused the notice (HTTP 401 stale: stale request: signed 360" in result.stderr
    assert result.stderr.endswith("this machine's clock must agree with the controller's\n")
    assert controller.refused == ["stale"]


def test_the_secret_from_the_environment_wins(controller: FakeController, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, listen_of(controller), secret="a-stale-file-secret")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    result = send(config, "--provider", "aws", "--deadline", "+1h")
    assert result.exit_code == 0, result.output
    assert len(controller.notices) == 1


def test_no_secret_at_all_is_a_config_error(controller: FakeController,
                                            tmp_path: Path) -> None:
    config = write_config(tmp_path, listen_of(controller))
    (tmp_path / "webhook.secret").unlink()
    result = send(config, "--provider", "aws", "--deadline", "+1h")
    assert result.exit_code == 2
    assert "webhook.secret does not exist" in result.stderr
