"""The reference app end to end in the lab: through DNS, across replication, on a standby.

Clients resolve the app's name at the lab's BIND and connect to the answer,
as users do; reads at the standby prove streaming replication carried the
writes.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from failover.waiting import wait_for
from tests.conftest import RunningLab

pytestmark = pytest.mark.lab

MEDIA_LIMIT = 1024 * 1024  # the app's default FAILOVER_MEDIA_MAX_BYTES


def _handle() -> str:
    return f"u_{uuid.uuid4().hex[:12]}"


def _user(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/v1/users", json={"handle": _handle(), "display_name": "Test"})
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def _standby_sees(lab: RunningLab, path: str) -> dict[str, Any]:
    """Wait until the standby's app serves ``path`` (replication is asynchronous)."""
    with lab.client("hetzner") as standby:
        def found() -> dict[str, Any] | None:
            response = standby.get(path)
            return response.json() if response.status_code == 200 else None

        result: dict[str, Any] = wait_for(found, timeout=10, what=f"the standby to serve {path}",
                                          retry_on=())
        return result


def test_the_name_resolves_to_the_primary_site(lab: RunningLab) -> None:
    assert lab.resolve() == [lab.layout.address("aws")]
    with lab.client_via_dns() as app:
        ready = app.get("/readyz").json()
    assert ready["site"] == "aws"
    assert ready["role"] == "primary"
    assert ready["writable"] is True


def test_users_follow_post_with_media_and_read_the_timeline_through_dns(
    lab: RunningLab,
) -> None:
    with lab.client_via_dns() as app:
        alice, bob = _user(app), _user(app)
        follow = app.post(f"/v1/users/{alice['id']}/follow", json={"followee_id": bob["id"]})
        assert follow.status_code in (200, 201), follow.text

        picture = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 64
        media = app.post("/v1/media", data={"owner_id": bob["id"]},
                         files={"file": ("cat.png", picture, "image/png")})
        assert media.status_code == 201, media.text
        media_id = media.json()["id"]

        post = app.post("/v1/posts",
                        json={"author_id": bob["id"], "text": "hello", "media_id": media_id})
        assert post.status_code == 201, post.text
        post_id = post.json()["id"]
        own = app.post("/v1/posts", json={"author_id": alice["id"], "text": "mine"})
        assert own.status_code == 201, own.text

        fetched = app.get(f"/v1/posts/{post_id}")
        assert fetched.status_code == 200
        assert fetched.json()["text"] == "hello"
        assert fetched.json()["media_id"] == media_id

        stored = app.get(f"/v1/media/{media_id}")
        assert stored.status_code == 200
        assert stored.content == picture
        assert stored.headers["content-type"] == "image/png"

        timeline = app.get(f"/v1/users/{alice['id']}/timeline")
        assert timeline.status_code == 200
        ids = [p["id"] for p in timeline.json()["posts"]]
        assert ids[:2] == [own.json()["id"], post_id]  # newest first, own and followed


def test_a_post_written_at_the_primary_is_readable_at_the_standby(lab: RunningLab) -> None:
    with lab.client("aws") as primary:
        author = _user(primary)
        post = primary.post("/v1/posts", json={"author_id": author["id"], "text": "replicated"})
        assert post.status_code == 201, post.text
    seen = _standby_sees(lab, f"/v1/posts/{post.json()['id']}")
    assert seen["text"] == "replicated"
    assert seen["author_id"] == author["id"]


def test_a_write_at_the_standby_gets_503_and_writes_nothing(lab: RunningLab) -> None:
    with lab.client("aws") as primary:
        author = _user(primary)
    _standby_sees(lab, f"/v1/users/{author['id']}")
    with lab.client("hetzner") as standby:
        ready = standby.get("/readyz").json()
        assert (ready["role"], ready["writable"]) == ("standby", False)

        refused = standby.post("/v1/posts", json={"author_id": author["id"], "text": "nope"})
        assert refused.status_code == 503
        body = refused.json()
        assert "standby" in body["error"]
        assert body["role"] == "standby"

        media = standby.post("/v1/media", data={"owner_id": author["id"]},
                             files={"file": ("x.txt", b"data", "text/plain")})
        assert media.status_code == 503

        user = standby.post("/v1/users", json={"handle": _handle()})
        assert user.status_code == 503
    with lab.client("aws") as primary:
        timeline = primary.get(f"/v1/users/{author['id']}/timeline").json()
    assert timeline["posts"] == []


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/users", {}, "handle"),
        ("/v1/users", {"handle": "Not Valid!"}, "handle"),
        ("/v1/posts", {"author_id": str(uuid.uuid4())}, "text"),
        ("/v1/posts", {"author_id": "not-a-uuid", "text": "x"}, "author_id"),
        ("/v1/posts", {"author_id": str(uuid.uuid4()), "text": "x" * 501}, "text"),
    ],
)
def test_malformed_writes_get_422_naming_the_field(
    lab: RunningLab, path: str, payload: dict[str, Any], field: str
) -> None:
    with lab.client_via_dns() as app:
        response = app.post(path, json=payload)
    assert response.status_code == 422
    assert field in response.json()["error"]


def test_unknown_users_get_404_with_a_clear_message(lab: RunningLab) -> None:
    ghost = str(uuid.uuid4())
    with lab.client_via_dns() as app:
        post = app.post("/v1/posts", json={"author_id": ghost, "text": "boo"})
        timeline = app.get(f"/v1/users/{ghost}/timeline")
        media = app.post("/v1/media", data={"owner_id": ghost},
                         files={"file": ("x.txt", b"data", "text/plain")})
    for response in (post, timeline, media):
        assert response.status_code == 404
        assert ghost in response.json()["error"]


def test_oversized_media_gets_413_giving_the_limit(lab: RunningLab) -> None:
    with lab.client_via_dns() as app:
        owner = _user(app)
        response = app.post("/v1/media", data={"owner_id": owner["id"]},
                            files={"file": ("big.bin", b"\0" * (MEDIA_LIMIT + 1),
                                            "application/octet-stream")})
    assert response.status_code == 413
    assert str(MEDIA_LIMIT) in response.json()["error"]
