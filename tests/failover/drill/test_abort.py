"""A drill's abort limits over hand-made workload logs: when it gives up, and why it says so."""

from __future__ import annotations

import pytest

from failover.drill.abort import AbortLimits, AbortWatch, DrillAborted, breach
from failover.drill.events import Event, WorkloadLog
from failover.waiting import wait_for

NOW = 1_800_000_000.0


def event(at: float, ok: bool = True, kind: str = "post", user: int = 0,
          cause: str | None = None) -> Event:
    return Event(NOW + at, kind, ok, None if ok else (cause or "read-only"), "127.0.0.1", 0.01,
                 user=user)


def steady(seconds: int, users: int = 2) -> list[Event]:
    """Every user writes once a second, all acknowledged, for ``seconds`` up to now."""
    return [event(-s, user=u) for s in range(seconds, 0, -1) for u in range(users)]


def test_no_limits_never_abort() -> None:
    failing = [event(-1, ok=False), event(-0.5, ok=False)]
    assert breach(failing, AbortLimits(), NOW) is None
    assert not AbortLimits().active


def test_an_error_rate_of_zero_aborts_at_the_first_error() -> None:
    limits = AbortLimits(error_rate=0.0)
    assert breach(steady(20), limits, NOW) is None
    why = breach([*steady(20), event(-0.2, ok=False, kind="timeline", cause="timeout")],
                 limits, NOW)
    # 9 s of two users in the window (10 s ago is out of it), and the failure
    assert why == ("error rate 5.3% over the last 10s (1 of 19 requests: timeout 1) passed "
                   "the limit of 0.0%")


def test_the_error_rate_is_over_the_window_only() -> None:
    limits = AbortLimits(error_rate=0.2, window_seconds=10)
    old_failures = [event(-15 - i / 10, ok=False) for i in range(40)]
    assert breach([*old_failures, *steady(10)], limits, NOW) is None  # outside the window
    recent = [event(-i / 10, ok=False) for i in range(1, 6)]
    assert breach([*steady(10), *recent], limits, NOW) is not None  # 5 of 25


def test_write_unavailability_counts_the_unluckiest_user_up_to_now() -> None:
    limits = AbortLimits(write_unavailable_seconds=5.0)
    # user 1's last acknowledged write was 8 s ago; it has failed since, and still does
    events = [*steady(10, users=1), event(-8, user=1), event(-7, ok=False, user=1),
              event(-1, ok=False, user=1)]
    assert breach(events, limits, NOW) == ("a user has been unable to write for 8.0s, past "
                                           "the limit of 5s")
    assert breach(events, AbortLimits(write_unavailable_seconds=9.0), NOW) is None


@pytest.mark.parametrize("limits", [{"error_rate": 1.5}, {"error_rate": -0.1},
                                    {"write_unavailable_seconds": -1.0},
                                    {"window_seconds": 0.0}])
def test_limits_out_of_range_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="abort"):
        AbortLimits(**limits)


def test_the_watch_fires_once_on_the_log_and_every_wait_then_raises() -> None:
    log = WorkloadLog(steady(5))
    heard: list[str] = []
    watch = AbortWatch(AbortLimits(error_rate=0.0), heard.append, clock=lambda: NOW)
    watch.start(log)
    try:
        watch.check()  # nothing yet
        log.append(event(-0.1, ok=False))
        wait_for(lambda: watch.reason is not None, timeout=10, what="the watch to fire",
                 retry_on=())
    finally:
        watch.stop()
    assert heard == [watch.reason]
    with pytest.raises(DrillAborted, match="aborted: error rate"):
        watch.wait(30)  # at once: the drill is aborted
    watch.fire("a second reason")
    assert watch.reason is not None and watch.reason.startswith("error rate")
    assert heard == [watch.reason]


def test_a_drill_can_be_aborted_from_outside() -> None:
    watch = AbortWatch(None, lambda _why: None)
    watch.start(WorkloadLog())  # no limits: nothing to watch
    watch.wait(0)
    watch.fire("the controller is stopping")
    with pytest.raises(DrillAborted, match="aborted: the controller is stopping"):
        watch.check()
