"""The policy on snapshots written by hand: what triggers a move, and what must not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from failover.watch.policy import (
    Move,
    RunSummary,
    Settings,
    Snapshot,
    refusal_notice,
    run_cycle,
)
from failover.watch.signals import Notice, Observation, Status

NOW = 1_800_000_000.0
SITES = {"aws": "aws", "hetzner": "hetzner"}
TWO = Settings(failures=3, needed=2, vantages=("a", "b"), margin=3600.0)


def look(kind: str, target: str, vantage: str, status: Status, at: float,
         **facts: object) -> Observation:
    return Observation(kind, target, vantage, at, status, 0.01,  # type: ignore[arg-type]
                       "" if status == "up" else "timed out after 1.0s", facts)


def history(app: dict[tuple[str, str], str], *, at: float = NOW) -> dict[
        tuple[str, str, str], tuple[Observation, ...]]:
    """Looks from a compact picture: (site, vantage) -> "uudd" (oldest first, 1 s apart)."""
    out: dict[tuple[str, str, str], tuple[Observation, ...]] = {}
    for (site, vantage), marks in app.items():
        out[("http", site, vantage)] = tuple(
            look("http", site, vantage, "up" if m == "u" else "down",
                 at - (len(marks) - i)) for i, m in enumerate(marks))
    out[("database", "aws", "a")] = (look("database", "aws", "a", "up", at, role="primary"),)
    out[("database", "hetzner", "a")] = (
        look("database", "hetzner", "a", "up", at, role="standby"),)
    return out


def snap(app: dict[tuple[str, str], str] | None = None, **kw: object) -> Snapshot:
    healthy = {("aws", "a"): "uuu", ("aws", "b"): "uuu", ("hetzner", "a"): "uuu",
               ("hetzner", "b"): "uuu"}
    fields: dict[str, object] = {"now": NOW, "sites": SITES, "primary": "aws",
                                 "history": history({**healthy, **(app or {})}),
                                 "settings": TWO}
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


def notice(provider: str = "aws", in_seconds: float = 86400.0, source: str = "webhook",
           reference: str = "") -> Notice:
    return Notice(provider, NOW + in_seconds, source, "contract ends",  # type: ignore[arg-type]
                  received=NOW, reference=reference)


def test_all_well_does_nothing_and_says_so() -> None:
    decision = run_cycle(snap())
    assert decision.action == "none"
    assert decision.sentence.startswith("all well: primary aws")


def test_the_primary_down_everywhere_promotes_the_standby() -> None:
    decision = run_cycle(snap({("aws", "a"): "uddd", ("aws", "b"): "uuddd"}))
    assert decision.action == "start"
    assert decision.move is not None
    assert (decision.move.kind, decision.move.from_site, decision.move.to_site) == \
        ("promote", "aws", "hetzner")
    assert "2 of 2 vantage points saw 3 failed looks in a row" in decision.sentence


def test_flapping_triggers_nothing() -> None:
    # Down more often than up, but never three in a row at either vantage point.
    decision = run_cycle(snap({("aws", "a"): "ddudduddudd", ("aws", "b"): "dudddudd"[:-1]}))
    assert decision.action == "none", decision.sentence


def test_one_vantage_point_alone_triggers_nothing() -> None:
    decision = run_cycle(snap({("aws", "a"): "dddddd"}))
    assert decision.action == "none"
    assert decision.sentence.startswith("all well")  # the quorum is what counts


def test_an_overloaded_controller_does_not_trust_its_own_timeouts() -> None:
    decision = run_cycle(snap({("aws", "a"): "ddd", ("aws", "b"): "ddd"}, lateness=0.8))
    assert decision.action == "none"
    assert "overloaded" in decision.sentence


def test_a_quorum_of_one_is_a_setting() -> None:
    decision = run_cycle(snap({("aws", "a"): "ddd"}, settings=replace(TWO, needed=1)))
    assert decision.action == "start"


def test_no_ready_standby_means_nothing_to_promote() -> None:
    down = {("aws", "a"): "ddd", ("aws", "b"): "ddd", ("hetzner", "a"): "ddd",
            ("hetzner", "b"): "ddd"}
    decision = run_cycle(snap(down))
    assert decision.action == "none"
    assert "no standby is ready" in decision.sentence


def test_a_notice_far_ahead_prepares_now_and_schedules_the_move() -> None:
    decision = run_cycle(snap(notices=(notice(in_seconds=86400),)))
    assert decision.action == "prepare"
    assert decision.move is not None
    assert decision.move.kind == "switchover" and decision.move.to_site == "hetzner"
    assert decision.move.due == NOW + 86400 - 3600  # the margin before the deadline
    assert "preparing now" in decision.sentence


def test_a_notice_inside_the_margin_moves_at_once() -> None:
    decision = run_cycle(snap(notices=(notice(in_seconds=600),)))
    assert decision.action == "start"
    assert decision.move is not None and decision.move.due == NOW


def test_a_notice_for_the_standbys_provider_moves_nothing() -> None:
    decision = run_cycle(snap(notices=(notice("hetzner", 600),)))
    assert decision.action == "none"


def _scheduled(state: str = "prepared", due: float = NOW + 1000, **kw: object) -> Move:
    return Move("m1", "switchover", "aws", "hetzner", "aws", "webhook notice", NOW - 10, due,
                state, notice_id="n1", **kw)  # type: ignore[arg-type]


def test_the_same_notice_twice_or_a_second_one_starts_no_second_move() -> None:
    first, second = notice(in_seconds=86400), notice(in_seconds=90000, source="mailbox")
    decision = run_cycle(snap(notices=(first, second), moves=(_scheduled(),)))
    assert decision.action == "none"
    assert decision.move is not None and decision.move.id == "m1"


def test_an_earlier_deadline_brings_the_move_forward() -> None:
    decision = run_cycle(snap(notices=(notice(in_seconds=600),), moves=(_scheduled(),)))
    assert decision.action == "start"
    assert decision.move is not None and decision.move.id == "m1"


def test_a_scheduled_move_starts_when_due() -> None:
    decision = run_cycle(snap(notices=(notice(in_seconds=3000),),
                              moves=(_scheduled(due=NOW - 1),)))
    assert decision.action == "start"
    assert decision.move is not None and decision.move.state == "started"


def test_approve_mode_proposes_and_waits_then_starts_once_approved() -> None:
    approve = replace(TWO, mode="approve")
    proposed = run_cycle(snap(notices=(notice(in_seconds=60),), settings=approve))
    assert proposed.action == "propose"
    assert proposed.move is not None
    assert f"failover approve {proposed.move.id}" in proposed.sentence
    waiting = run_cycle(snap(notices=(notice(in_seconds=60),), settings=approve,
                             moves=(proposed.move,)))
    assert waiting.action == "none" and "waiting for approval" in waiting.sentence
    approved = replace(proposed.move, state="approved", approved=NOW)
    started = run_cycle(snap(notices=(notice(in_seconds=60),), settings=approve,
                             moves=(approved,)))
    assert started.action == "start"


def test_approve_mode_still_prepares_at_once() -> None:
    decision = run_cycle(snap(notices=(notice(),), settings=replace(TWO, mode="approve")))
    assert decision.action == "prepare"


def test_the_primary_failing_replaces_a_scheduled_switchover_with_a_promote() -> None:
    down = {("aws", "a"): "ddd", ("aws", "b"): "ddd"}
    decision = run_cycle(snap(down, notices=(notice(),), moves=(_scheduled(),)))
    assert decision.action == "start"
    assert decision.move is not None and decision.move.kind == "promote"
    assert decision.supersedes == "m1"


def test_nothing_while_a_run_is_under_way() -> None:
    running = RunSummary("r1", "promote", "aws", "hetzner", "running", 1, None)
    down = {("aws", "a"): "ddd", ("aws", "b"): "ddd"}
    decision = run_cycle(snap(down, run=running))
    assert decision.action == "none" and "under way" in decision.sentence


def test_an_interrupted_run_is_resumed() -> None:
    run = RunSummary("r1", "switchover", "aws", "hetzner", "interrupted", 1, None)
    decision = run_cycle(snap(run=run))
    assert (decision.action, decision.run_id) == ("resume", "r1")


def test_a_failed_run_is_tried_again_a_little_later_then_left_to_a_person() -> None:
    soon = RunSummary("r1", "switchover", "aws", "hetzner", "failed", 1, NOW - 1, "boom")
    assert run_cycle(snap(run=soon)).action == "none"
    later = replace(soon, ended=NOW - 10)
    assert run_cycle(snap(run=later)).action == "resume"
    spent = replace(later, attempts=3)
    decision = run_cycle(snap(run=spent))
    assert decision.action == "none" and "an operator must look" in decision.sentence


def test_refused_credentials_are_a_notice_only_after_n_looks_in_a_row() -> None:
    statuses: list[Status] = ["refused", "up", "refused", "refused"]
    looks = [look("api", "aws", "a", s, NOW + i) for i, s in enumerate(statuses)]
    assert refusal_notice(looks, 3, "aws") is None
    looks.append(look("api", "aws", "a", "refused", NOW + 4))
    found = refusal_notice(looks, 3, "aws")
    assert found is not None
    # The deadline is when the last look confirmed it, not the first refusal: an old
    # first refusal (a long API interval) would be refused as a deadline long past.
    assert (found.provider, found.source) == ("aws", "api")
    assert found.deadline == pytest.approx(NOW + 4.01)
    assert found.deadline_problem(NOW + 4.02) is None
    # A timeout is unhealthy, not a termination signal.
    timeouts = [look("api", "aws", "a", "down", NOW + i) for i in range(5)]
    assert refusal_notice(timeouts, 3, "aws") is None


def test_a_notice_is_its_senders_reference_else_its_provider_and_exact_deadline() -> None:
    # The same webhook delivered twice (its id) is one notice, whatever else it says.
    assert notice(reference="t-1").id == replace(notice(reference="t-1"), text="again").id
    assert notice(reference="t-1").id != notice(reference="t-2").id
    # A letter and a webhook with the same reference are not the same notice.
    assert notice(reference="x").id != notice(source="mailbox", reference="x").id
    # Without a reference of its own (the CLI names who sent it): provider and deadline.
    by_hand = notice(source="cli", reference="cli:alice@ops1")
    assert by_hand.id == notice(source="cli", reference="cli:bob@ops2").id
    assert notice("aws").id != notice("hetzner").id
    # Two notices for one provider 40 s apart in the same minute are two notices
    # (one minute's bucket made the second "already answered" after a move back).
    assert notice(in_seconds=3600).id != notice(in_seconds=3640).id


def test_a_failed_preparation_is_abandoned_not_retried_for_ever() -> None:
    run = RunSummary("r1", "prepare", "aws", "hetzner", "failed", 1, NOW - 60, "boom")
    decision = run_cycle(snap(run=run))
    assert (decision.action, decision.run_id) == ("abandon", "r1")


def test_a_lost_standby_makes_prepared_commits_asynchronous_again() -> None:
    looks = history({("aws", "a"): "uuu", ("aws", "b"): "uuu", ("hetzner", "a"): "ddd",
                     ("hetzner", "b"): "ddd"})
    looks[("database", "hetzner", "a")] = tuple(
        look("database", "hetzner", "a", "down", NOW - i) for i in (2, 1, 0))
    decision = run_cycle(snap(history=looks, notices=(notice(),), moves=(_scheduled(),)))
    assert decision.action == "relax"
    assert decision.move is not None and decision.move.id == "m1"


def test_a_promote_that_never_started_is_dropped_when_the_primary_answers_again() -> None:
    stale = replace(_scheduled(state="approved"), id="p1", kind="promote", approved=NOW - 99)
    decision = run_cycle(snap(moves=(stale,)))
    assert decision.action == "none" and decision.supersedes == "p1"


def test_a_refused_plan_is_asked_again_only_after_a_pause() -> None:
    refused = _scheduled(state="scheduled", due=NOW - 1, refused_at=NOW - 0.5,
                         refusal="standby still streams")
    waiting = run_cycle(snap(notices=(notice(in_seconds=600),), moves=(refused,)))
    assert waiting.action == "none" and "asking again shortly" in waiting.sentence
    later = replace(refused, refused_at=NOW - 5)
    assert run_cycle(snap(notices=(notice(in_seconds=600),), moves=(later,))).action == "start"


def test_a_letter_alone_never_moves_without_a_person() -> None:
    letter = notice(in_seconds=600, source="mailbox")
    decision = run_cycle(snap(notices=(letter,)))
    assert decision.action == "propose"  # even in auto mode: a letter is easy to forge
    assert decision.move is not None and decision.move.needs_approval
