"""Waiting on conditions with one deadline, on an injected clock."""

from __future__ import annotations

import pytest

from failover.waiting import WaitTimeout, wait_for


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "ready"])
    clock = FakeClock()
    result = wait_for(lambda: next(answers), timeout=5, what="x", retry_on=(), clock=clock,
                      sleep=clock.sleep)
    assert result == "ready"
    assert clock.sleeps == [0.05, 0.05]


def test_retried_exceptions_count_as_not_yet_and_are_named_on_timeout() -> None:
    clock = FakeClock()

    def refuse() -> bool:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(WaitTimeout, match=r"after 1s waiting for the server.*connection refused"):
        wait_for(refuse, timeout=1, what="the server", retry_on=ConnectionRefusedError,
                 clock=clock, sleep=clock.sleep)
    assert clock.now >= 1


def test_only_the_errors_named_in_retry_on_count_as_not_yet() -> None:
    clock = FakeClock()
    answers: list[BaseException | bool] = [ConnectionRefusedError("not yet"),
                                           RuntimeError("the process died"), True]

    def probe() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    with pytest.raises(RuntimeError, match="the process died"):
        wait_for(probe, timeout=5, what="x", clock=clock, sleep=clock.sleep,
                 retry_on=ConnectionRefusedError)
    assert clock.sleeps == [0.05]  # one "not yet", then the end at once


def test_with_nothing_to_retry_the_first_exception_ends_the_wait() -> None:
    clock = FakeClock()

    def dropped() -> bool:
        raise ConnectionResetError("server closed the connection unexpectedly")

    with pytest.raises(ConnectionResetError, match="closed the connection"):
        wait_for(dropped, timeout=30, what="a replay", retry_on=(), clock=clock,
                 sleep=clock.sleep)
    assert clock.sleeps == []  # not one "not yet": the deadline was never waited on


def test_the_timeout_without_errors_names_only_what_was_awaited() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        wait_for(lambda: False, timeout=0.2, what="the lock", retry_on=(), clock=clock,
                 sleep=clock.sleep)
    assert str(caught.value) == "timed out after 0.2s waiting for the lock"
