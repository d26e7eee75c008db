"""HTTP behaviour that needs no database server: validation, error shapes, outages.

The app's database is a closed port on a loopback address, so every database access
fails at once; end-to-end behaviour against real servers is in test_app_in_lab.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from infra.refapp.api import SITE_HEADER, create_app
from infra.refapp.db import Database, _connection_kwargs, short_cause
from infra.refapp.errors import ReadOnlyDatabase, format_validation_errors
from infra.refapp.settings import Settings

SITE = "testsite"
MEDIA_LIMIT = 16
UNREACHABLE_DSN = "host=127.0.99.254 port=1 dbname=social user=app"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings(
        site=SITE,
        database_dsn=UNREACHABLE_DSN,
        s3_endpoint="http://127.0.99.254:1",
        s3_bucket="refapp-test",
        media_max_bytes=MEDIA_LIMIT,
    )
    db = Database(UNREACHABLE_DSN, SITE, timeout=1.0, outage_timeout=0.3, connect_timeout=1)
    with TestClient(create_app(settings, db=db)) as test_client:
        yield test_client


def test_healthz_needs_no_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "site": SITE}
    assert response.headers[SITE_HEADER] == SITE


def test_readyz_reports_an_unreachable_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["site"], body["role"], body["writable"]) == (SITE, "unknown", False)
    assert body["database"].startswith("database unavailable: ")
    assert body["error"] == body["database"]


# Fixed ids: test ids must be the same in every pytest worker (make test runs two).
SOME_ID, OTHER_ID = "7ce9123a-b00f-44e7-b8c1-3aa0d818d045", "e4f251ff-9ae5-4537-a394-a6b822a71da4"


@pytest.mark.parametrize(
    ("method", "path", "json"),
    [
        ("POST", "/v1/users", {"handle": "alice"}),
        ("GET", f"/v1/users/{SOME_ID}", None),
        ("POST", "/v1/posts", {"author_id": SOME_ID, "text": "hi"}),
        ("GET", f"/v1/posts/{SOME_ID}", None),
        ("GET", f"/v1/users/{SOME_ID}/timeline", None),
        ("POST", f"/v1/users/{SOME_ID}/follow", {"followee_id": OTHER_ID}),
    ],
)
def test_database_outage_is_a_503_naming_the_cause(
    client: TestClient, method: str, path: str, json: object
) -> None:
    response = client.request(method, path, json=json)
    assert response.status_code == 503
    body = response.json()
    assert body["error"].startswith("database unavailable: ")
    assert body["site"] == SITE
    assert response.headers["Retry-After"] == "1"


def test_validation_error_names_the_field(client: TestClient) -> None:
    response = client.post("/v1/posts", json={"author_id": str(uuid.uuid4()), "text": ""})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid request: body.text: String should have at least 1 character"
    assert body["fields"] == [
        {
            "field": "body.text",
            "message": "String should have at least 1 character",
            "type": "string_too_short",
        }
    ]


def test_several_validation_errors_are_all_named(client: TestClient) -> None:
    response = client.post("/v1/posts", json={"author_id": "nope", "text": "x" * 501})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith("invalid request: ")
    assert "body.author_id: " in error
    assert "body.text: String should have at most 500 characters" in error


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "body.handle"),
        ({"handle": ""}, "body.handle"),
        ({"handle": "Has Caps"}, "body.handle"),
        ({"handle": "x" * 33}, "body.handle"),
        ({"handle": "ok", "display_name": "x" * 65}, "body.display_name"),
    ],
)
def test_invalid_user(client: TestClient, payload: dict[str, object], field: str) -> None:
    response = client.post("/v1/users", json=payload)
    assert response.status_code == 422
    assert f"{field}: " in response.json()["error"]


def test_malformed_uuid_in_path_is_422(client: TestClient) -> None:
    for path in ("/v1/users/not-a-uuid", "/v1/posts/123", "/v1/media/x", "/v1/users/x/timeline"):
        response = client.get(path)
        assert response.status_code == 422, path
        assert "path." in response.json()["error"]


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_timeline_limit_bounds(client: TestClient, limit: str) -> None:
    response = client.get(f"/v1/users/{uuid.uuid4()}/timeline", params={"limit": limit})
    assert response.status_code == 422
    assert "query.limit: " in response.json()["error"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/posts", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith("invalid request: body: not valid JSON")


def test_following_oneself_is_422(client: TestClient) -> None:
    me = str(uuid.uuid4())
    response = client.post(f"/v1/users/{me}/follow", json={"followee_id": me})
    assert response.status_code == 422
    assert response.json()["error"] == "a user cannot follow themselves"


def test_oversized_media_is_413_with_the_limit(client: TestClient) -> None:
    response = client.post(
        "/v1/media",
        data={"owner_id": str(uuid.uuid4())},
        files={"file": ("big.bin", b"x" * (MEDIA_LIMIT + 1), "application/octet-stream")},
    )
    assert response.status_code == 413
    body = response.json()
    assert str(MEDIA_LIMIT) in body["error"]
    assert body["max_bytes"] == MEDIA_LIMIT


def test_empty_media_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/media",
        data={"owner_id": str(uuid.uuid4())},
        files={"file": ("empty.bin", b"", "application/octet-stream")},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "the uploaded file is empty"


def test_media_without_file_or_owner_is_422(client: TestClient) -> None:
    response = client.post("/v1/media", data={"owner_id": str(uuid.uuid4())})
    assert response.status_code == 422
    assert "body.file: Field required" in response.json()["error"]
    response = client.post("/v1/media", files={"file": ("a.txt", b"a", "text/plain")})
    assert response.status_code == 422
    assert "body.owner_id: Field required" in response.json()["error"]


def test_media_upload_checks_the_database_before_storage(client: TestClient) -> None:
    # The bucket endpoint is unreachable too: the 503 must come from the database check.
    response = client.post(
        "/v1/media",
        data={"owner_id": str(uuid.uuid4())},
        files={"file": ("a.txt", b"a", "text/plain")},
    )
    assert response.status_code == 503
    assert response.json()["error"].startswith("database unavailable: ")


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {"error": "no such endpoint: GET /v2/nothing"}
    response = client.delete("/v1/users")
    assert response.status_code == 405
    assert response.json() == {"error": "method DELETE is not allowed on /v1/users"}


def test_read_only_error_sentences() -> None:
    standby = ReadOnlyDatabase("hetzner", "standby")
    assert standby.status_code == 503
    assert standby.body() == {
        "error": "read-only: the database of site 'hetzner' is a standby; "
        "send writes to the primary",
        "site": "hetzner",
        "role": "standby",
    }
    fenced = ReadOnlyDatabase("aws", "primary")
    assert fenced.body()["error"].startswith("read-only: the database of site 'aws' refuses")


def test_format_validation_errors_without_location() -> None:
    body = format_validation_errors([{"msg": "bad", "type": "value_error"}])
    assert body["error"] == "invalid request: request: bad"


def test_short_cause_takes_the_first_line() -> None:
    exc = RuntimeError(
        'connection failed: connection to server at "h", port 1 failed: Connection refused\n'
        "\tIs the server running on that host and accepting TCP/IP connections?"
    )
    assert short_cause(exc) == 'connection to server at "h", port 1 failed: Connection refused'
    assert short_cause(RuntimeError("")) == "RuntimeError"
    assert len(short_cause(RuntimeError("x" * 1000))) == 200


def test_connection_kwargs_defer_to_the_dsn() -> None:
    kwargs = _connection_kwargs("host=h connect_timeout=9 application_name=mine", "aws", 3)
    assert "connect_timeout" not in kwargs
    assert "application_name" not in kwargs
    assert kwargs["autocommit"] is True
    assert kwargs["keepalives"] == 1
    assert _connection_kwargs("host=h", "aws", 3)["connect_timeout"] == 3
