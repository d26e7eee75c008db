"""Command line: bad settings stop the start with one clear line and status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.refapp.__main__ import build_parser, main

REPO = Path(__file__).resolve().parents[3]


def test_missing_setting_exits_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("FAILOVER_"):
            monkeypatch.delenv(name)
    assert main(["--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err == "refapp: FAILOVER_SITE is required but not set\n"


def test_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.log_level, args.access_log) == (
        "127.0.0.1",
        8080,
        "warning",
        False,
    )
    args = build_parser().parse_args(["--log-level", "debug", "--access-log"])
    assert (args.log_level, args.access_log) == ("debug", True)


@pytest.mark.lab  # starts the app's process (which refuses its settings)
def test_module_entry_point_has_no_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAILOVER_")}
    env["FAILOVER_SITE"] = "aws"
    env["FAILOVER_DATABASE_DSN"] = "host=127.0.99.254 password=hunter2"
    result = subprocess.run(
        [sys.executable, "-m", "infra.refapp"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "refapp: FAILOVER_DATABASE_DSN must not contain a password; put it in PGPASSFILE"
    ]
