"""Plans: data that prints, serialises and checksums the same every time."""

from __future__ import annotations

import json

from failover.engine.plan import Plan, Step


def a_plan(timeout: float = 30) -> Plan:
    return Plan("switchover", "aws", "hetzner", (
        Step("check_switchover", "aws is the only primary", {"from": "aws", "to": "hetzner"},
             timeout, retry=True, changes=False),
        Step("fence", "fence aws", {"site": "aws", "best_effort": False}, 30, retry=True),
    ), ("a note",))


def test_the_checksum_is_stable_and_follows_the_content() -> None:
    assert a_plan().checksum() == a_plan().checksum()
    assert a_plan(31).checksum() != a_plan().checksum()


def test_a_plan_survives_json() -> None:
    data = json.loads(json.dumps(a_plan().to_dict()))
    again = Plan.from_dict(data)
    assert again == a_plan()
    assert data["checksum"] == a_plan().checksum()


def test_the_text_names_every_step_its_limits_and_the_notes() -> None:
    text = str(a_plan())
    assert text.splitlines()[0] == (
        f"plan: switchover aws -> hetzner (2 steps, checksum {a_plan().checksum()[:12]})"
    )
    assert "1. check_switchover" in text and "[timeout 30s, retried, read-only]" in text
    assert "2. fence" in text and "note: a note" in text
