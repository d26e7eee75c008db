"""The app refuses writes once its site's lease lapsed: before the handler and after it.

The lease file is written as the agent writes it (a temporary file renamed over it).
The app runs in process (TestClient) over a fake database that is a writable primary:
what is tested here is the fence, not PostgreSQL; end-to-end lease behaviour is the
agent's and the drills' business.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infra.refapp.api import SITE_HEADER, create_app
from infra.refapp.db import Database, DatabaseStatus, Role
from infra.refapp.lease import LeaseFile, parse_lease
from infra.refapp.settings import LEASE_FILE_VAR, Settings, SettingsError

SITE = "testsite"
WRITE_PATH = "/test/write"
READ_PATH = "/test/read"


class FakePrimary(Database):
    """A fake database: a writable primary that is never connected to."""

    def __init__(self) -> None:  # no pool: there is nothing to connect to
        self.site = SITE

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def prepare(self, timeout: float | None = None) -> DatabaseStatus | None:
        """Ready at once."""
        return self.status(timeout)

    def status(self, timeout: float | None = None) -> DatabaseStatus:
        """A writable primary."""
        return DatabaseStatus(Role.PRIMARY, True, 1)


def write_lease(path: Path, content: dict[str, Any] | str) -> None:
    """Replace the lease file the way the agent does: write aside, then rename."""
    aside = path.with_name(path.name + ".tmp")
    aside.write_text(content if isinstance(content, str) else json.dumps(content))
    os.replace(aside, path)


def held(seconds_left: float) -> dict[str, Any]:
    """A held lease that lapses ``seconds_left`` from now (negative: already lapsed)."""
    return {"state": "held", "monotonic_expires": time.monotonic() + seconds_left}


class App:
    """The app under test, with routes of the test's own that record their calls."""

    def __init__(self, lease_file: Path | None) -> None:
        settings = Settings(site=SITE, database_dsn="host=127.0.99.254 port=1",
                            s3_endpoint="http://127.0.99.254:1", s3_bucket="refapp-test",
                            lease_file=lease_file)
        self.lease_file = lease_file
        self.calls: list[str] = []
        self.during: dict[str, Any] | None = None  # a lease to write while the write runs
        self.app: FastAPI = create_app(settings, db=FakePrimary())

        @self.app.api_route(WRITE_PATH, methods=["POST", "PUT", "PATCH", "DELETE"],
                            status_code=201)
        def write() -> dict[str, str]:
            self.calls.append("write")
            if self.during is not None:
                assert self.lease_file is not None
                write_lease(self.lease_file, self.during)
            return {"written": "yes"}

        @self.app.get(READ_PATH)
        def read() -> dict[str, str]:
            self.calls.append("read")
            return {"read": "yes"}


@pytest.fixture
def lease_file(tmp_path: Path) -> Path:
    return tmp_path / "lease.json"


@pytest.fixture
def app(lease_file: Path) -> Iterator[tuple[App, TestClient]]:
    under_test = App(lease_file)
    with TestClient(under_test.app) as client:
        yield under_test, client


def assert_fenced(response: Any) -> None:
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "fenced"
    assert body["site"] == SITE
    assert body["error"].endswith(": it may no longer be the primary; writes are refused")
    assert response.headers["Retry-After"] == "1"
    assert response.headers[SITE_HEADER] == SITE


def test_without_a_lease_file_variable_writes_work() -> None:
    under_test = App(None)
    with TestClient(under_test.app) as client:
        assert client.post(WRITE_PATH).status_code == 201
        assert client.get("/readyz").json()["lease"] == "off"
    assert under_test.calls == ["write"]


@pytest.mark.parametrize("content", [None, {"state": "off"}], ids=["missing", "off"])
def test_a_missing_file_or_leases_off_let_writes_through(
    app: tuple[App, TestClient], lease_file: Path, content: dict[str, Any] | None
) -> None:
    under_test, client = app
    if content is not None:
        write_lease(lease_file, content)
    assert client.post(WRITE_PATH).json() == {"written": "yes"}
    ready = client.get("/readyz").json()
    assert (ready["writable"], ready["lease"], ready["reason"]) == (True, "off", None)
    assert under_test.calls == ["write"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_held_lease_lets_writes_through(
    app: tuple[App, TestClient], lease_file: Path, method: str
) -> None:
    under_test, client = app
    write_lease(lease_file, held(60))
    response = client.request(method, WRITE_PATH)
    assert (response.status_code, response.json()) == (201, {"written": "yes"})
    assert under_test.calls == ["write"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_lapsed_lease_refuses_writes_before_the_handler(
    app: tuple[App, TestClient], lease_file: Path, method: str
) -> None:
    under_test, client = app
    write_lease(lease_file, held(-2))
    response = client.request(method, WRITE_PATH)
    assert_fenced(response)
    assert "this site's lease lapsed 2." in response.json()["error"]
    assert under_test.calls == []


def test_the_app_s_own_write_routes_are_fenced(
    app: tuple[App, TestClient], lease_file: Path
) -> None:
    _, client = app
    write_lease(lease_file, held(-1))
    # The fake database would fail this write: 503 fenced shows the handler never ran.
    assert_fenced(client.post("/v1/users", json={"handle": "alice"}))


def test_a_lease_lapsing_during_the_handler_replaces_its_answer(
    app: tuple[App, TestClient], lease_file: Path
) -> None:
    under_test, client = app
    write_lease(lease_file, held(60))
    # As if the host were frozen after the write and resumed after the lease's end.
    under_test.during = held(-0.5)
    assert_fenced(client.post(WRITE_PATH))
    assert under_test.calls == ["write"]


def test_reads_are_served_when_the_lease_lapsed(
    app: tuple[App, TestClient], lease_file: Path
) -> None:
    under_test, client = app
    write_lease(lease_file, held(-1))
    response = client.get(READ_PATH)
    assert (response.status_code, response.json()) == (200, {"read": "yes"})
    assert client.get("/healthz").status_code == 200
    assert under_test.calls == ["read"]


def test_readyz_says_why_a_lapsed_primary_is_not_writable(
    app: tuple[App, TestClient], lease_file: Path
) -> None:
    _, client = app
    write_lease(lease_file, held(30))
    ready = client.get("/readyz").json()
    assert (ready["role"], ready["writable"], ready["lease"], ready["reason"]) == (
        "primary", True, "held", None)

    write_lease(lease_file, held(-1))
    response = client.get("/readyz")
    ready = response.json()
    assert response.status_code == 200  # it still serves reads
    assert (ready["role"], ready["writable"], ready["lease"]) == ("primary", False, "lapsed")
    assert ready["reason"].startswith("this site's lease lapsed ")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "is not a JSON object"),
        ('{"state": "maybe"}', "has an unknown state 'maybe'"),
        ('{"state": "held"}', "has no finite number monotonic_expires: None"),
        ('{"state": "held", "monotonic_expires": "soon"}', "monotonic_expires: 'soon'"),
        ('{"state": "held", "monotonic_expires": true}', "monotonic_expires: True"),
        ('{"state": "held", "monotonic_expires": NaN}', "monotonic_expires: nan"),
    ],
)
def test_a_malformed_lease_file_counts_as_lapsed_and_is_logged_once(
    app: tuple[App, TestClient], lease_file: Path, caplog: pytest.LogCaptureFixture,
    content: str, problem: str,
) -> None:
    under_test, client = app
    write_lease(lease_file, content)
    with caplog.at_level(logging.ERROR, logger="infra.refapp.lease"):
        for _ in range(3):
            response = client.post(WRITE_PATH)
            assert_fenced(response)
            assert problem in response.json()["error"]
        assert client.get("/readyz").json()["writable"] is False
    assert under_test.calls == []
    logged = [r.getMessage() for r in caplog.records if r.name == "infra.refapp.lease"]
    assert len(logged) == 1, logged
    assert problem in logged[0] and str(lease_file) in logged[0]


def test_an_unreadable_lease_file_counts_as_lapsed(tmp_path: Path) -> None:
    # A directory where the file should be: stat works, reading does not.
    (tmp_path / "lease.json").mkdir()
    view = LeaseFile(tmp_path / "lease.json").check()
    assert (view.state, view.writable) == ("lapsed", False)
    assert view.reason is not None and "cannot be read" in view.reason


def test_the_lease_lapses_exactly_at_its_deadline(lease_file: Path) -> None:
    now = [100.0]
    lease = LeaseFile(lease_file, clock=lambda: now[0])
    write_lease(lease_file, {"state": "held", "monotonic_expires": 100.5})
    assert lease.check().state == "held"
    now[0] = 100.5
    assert lease.check().state == "lapsed"
    assert lease.check().reason == (
        "this site's lease lapsed 0.0 s ago: it may no longer be the primary; writes are refused")


def test_the_file_is_read_again_only_when_replaced(lease_file: Path) -> None:
    lease = LeaseFile(lease_file, clock=lambda: 0.0)
    write_lease(lease_file, {"state": "held", "monotonic_expires": 10})
    assert lease.check().state == "held"
    # Written in place, keeping inode, size and mtime: the cached version still counts.
    stat = os.stat(lease_file)
    lease_file.write_text(json.dumps({"state": "held", "monotonic_expires": -1}))
    os.utime(lease_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert lease.check().state == "held"
    write_lease(lease_file, {"state": "off"})
    assert lease.check().state == "off"


def test_parse_lease_takes_integers_and_floats() -> None:
    assert parse_lease(b'{"state": "held", "monotonic_expires": 12}').expires == 12.0
    assert parse_lease(b'{"state": "held", "monotonic_expires": 1.5}').expires == 1.5
    assert parse_lease(b'{"state": "off", "monotonic_expires": 1.5}').expires is None


def test_the_lease_file_variable() -> None:
    env = {"FAILOVER_SITE": SITE, "FAILOVER_DATABASE_DSN": "host=db dbname=social",
           "FAILOVER_S3_ENDPOINT": "http://127.0.0.1:5000", "FAILOVER_S3_BUCKET": "media"}
    assert Settings.from_env(env).lease_file is None
    assert Settings.from_env({**env, LEASE_FILE_VAR: " "}).lease_file is None
    assert Settings.from_env({**env, LEASE_FILE_VAR: "/run/x/lease.json"}).lease_file == Path(
        "/run/x/lease.json")
    with pytest.raises(SettingsError, match="FAILOVER_LEASE_FILE must be an absolute path"):
        Settings.from_env({**env, LEASE_FILE_VAR: "lease.json"})
