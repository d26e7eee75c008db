"""``failover lab status``: parts, roles, replication and what each DNS provider answers."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import RunningLab

pytestmark = pytest.mark.lab


def _status(lab: RunningLab, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failover", "lab", "status",
         "--state-dir", str(lab.lab.paths.root), *extra],
        capture_output=True, text=True, check=False, timeout=60,
    )


def test_status_json_shows_roles_replication_and_both_dns_providers(lab: RunningLab) -> None:
    done = _status(lab, "--json")
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    aws, hetzner = lab.layout.address("aws"), lab.layout.address("hetzner")

    assert status["healthy"] is True
    assert status["primary"] == "aws"
    assert status["sites"]["aws"]["role"] == "primary"
    assert status["sites"]["hetzner"]["role"] == "standby"
    assert status["sites"]["hetzner"]["replication"] == "streaming"
    assert status["sites"]["hetzner"]["lag_bytes"] >= 0
    assert status["sites"]["spare"]["role"] == "empty"
    assert status["dns"]["bind9"]["answer"] == [aws]
    assert status["dns"]["route53"]["answer"] == [aws]
    assert status["dns"]["bind9"]["ttl"] == lab.layout.ttl
    parts = {p["name"]: p for p in status["parts"]}
    assert parts["app@hetzner"]["role"] == "standby"
    assert parts["postgres@hetzner"]["address"] == hetzner
    # The spare site's provider answers a rebuild's token, with no server yet.
    assert parts["hcloud@spare"]["address"] == lab.layout.address("spare")
    assert parts["hcloud@spare"]["detail"].startswith("fake; ")
    assert all(p["health"] == "ok" and p["rss_bytes"] > 0 for p in parts.values())


def test_status_text_is_readable_and_hides_secrets(lab: RunningLab) -> None:
    done = _status(lab)
    assert done.returncode == 0, done.stderr
    assert "primary: aws" in done.stdout
    assert "hetzner: streaming (async)" in done.stdout
    for secret in (lab.secrets.app_password, lab.secrets.tsig.secret,
                   lab.secrets.aws_secret_access_key):
        assert secret not in done.stdout
