"""``POST /v1/signals`` in process (no server, no lab): what is kept, refused, or put off.

The controller is a real one over a hand-built deployment; requests go
through FastAPI's test client, so the answers are the API's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from failover.watch.api import make_app
from failover.watch.controller import Controller
from failover.watch.store import StoreError
from failover.watch.webhook import sign
from tests.failover.handbuilt import HandBuiltDeployment, JournalingExecutor

NOW = 1_800_000_000.0
SECRET = b"the webhook's secret"


@pytest.fixture
def controller(tmp_path: Path) -> Controller:
    return Controller(HandBuiltDeployment(tmp_path), clock=lambda: NOW,
                      executor=JournalingExecutor())


def body(deadline: float, reference: str = "t-1") -> bytes:
    return json.dumps({"type": "termination", "provider": "aws", "deadline": deadline,
                       "id": reference}).encode()


def post(controller: Controller, data: bytes, headers: dict[str, str] | None = None,
         ) -> tuple[int, dict[str, object]]:
    client = TestClient(make_app(controller, SECRET))
    response = client.post("/v1/signals", content=data,
                           headers=sign(SECRET, data, NOW) if headers is None else headers)
    return response.status_code, response.json()


def test_a_notice_is_kept_once_and_its_request_is_never_taken_twice(
        controller: Controller) -> None:
    data = body(NOW + 3600)
    headers = sign(SECRET, data, NOW)
    status, answer = post(controller, data, headers)
    assert (status, answer["new"]) == (202, True)
    status, answer = post(controller, data, headers)  # the same request, captured and replayed
    assert (status, answer["reason"]) == (401, "replayed")
    status, answer = post(controller, data, sign(SECRET, data, NOW - 1))  # signed anew
    assert (status, answer["new"]) == (202, False)
    assert [n.reference for n in controller.store.notices()] == ["t-1"]


def test_a_deadline_long_past_is_a_400_counted_as_a_refused_notice(
        controller: Controller) -> None:
    status, answer = post(controller, body(NOW - 3600))
    assert (status, answer["reason"]) == (400, "past-deadline")
    metrics = controller.metrics.text().decode()
    assert 'failover_signals_refused_total{reason="past-deadline"} 1.0' in metrics
    assert ('failover_notices_refused_total{reason="past-deadline",source="webhook"} 1.0'
            in metrics)
    assert controller.store.notices(pending=False) == []


@pytest.mark.parametrize("failing", ["first_use", "add_notice"])
def test_a_store_that_fails_is_a_503_to_send_again_not_a_500(
        controller: Controller, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    def locked(*_args: object, **_kwargs: object) -> bool:
        raise StoreError("the controller's store watch.sqlite: database is locked")

    monkeypatch.setattr(controller.store, failing, locked)
    status, answer = post(controller, body(NOW + 3600))
    assert (status, answer["reason"]) == (503, "store")
    assert str(answer["error"]).endswith("database is locked; send it again")
