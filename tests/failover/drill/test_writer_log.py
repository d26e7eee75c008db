"""The writer's log: write-unavailability is measured from what the writer saw."""

from __future__ import annotations

from failover.drill.workload import Ack, Failure, WriterLog


def log_of(acks: list[float], failures: list[float]) -> WriterLog:
    return WriterLog([Ack(str(at), at, "127.0.0.1") for at in acks],
                     [Failure(at, "connect", "refused") for at in failures])


def test_no_failures_no_windows() -> None:
    log = log_of([1, 2, 3], [])
    assert log.unavailable_windows() == [] and log.longest_unavailable() == 0.0


def test_a_window_runs_from_the_last_ack_to_the_next() -> None:
    log = log_of([1, 2, 5, 6], [3, 4])
    assert log.unavailable_windows() == [(2, 5)]
    assert log.longest_unavailable() == 3


def test_an_outage_that_never_ends_still_counts() -> None:
    log = log_of([1], [2, 30])
    assert log.unavailable_windows() == [(1, 30)]
    assert log.unavailable_windows(until=40) == [(1, 40)]


def test_failures_before_the_first_ack_start_at_the_first_failure() -> None:
    assert log_of([5, 6], [2, 3]).unavailable_windows() == [(2, 5)]


def test_separate_outages_are_separate_windows() -> None:
    log = log_of([1, 4, 8], [2, 3, 6])
    assert log.unavailable_windows() == [(1, 4), (4, 8)]
