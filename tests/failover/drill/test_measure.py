"""The drill's figures and its typed report, from a hand-built workload log (no lab)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from failover.drill import measure
from failover.drill.losses import Losses
from failover.drill.objectives import no_split_brain_writes
from failover.drill.probes import DnsChange
from failover.drill.results import Promise, Series, Verdict
from failover.drill.scenarios import SCENARIOS
from failover.drill.workload import Event, WorkloadLog, WorkloadSpec
from tests.failover.drill.test_objectives import FAULT, a_run
from tests.failover.drill.test_report import KEYS

OLD, NEW = "127.0.0.10", "127.0.0.20"


def ack(at: float, address: str = OLD, *, kind: str = "post", user: int = 0) -> Event:
    return Event(FAULT + at, kind, True, None, address, 0.01, id=f"{kind}-{at}", user=user)


def fail(at: float, cause: str = "read-only", *, user: int = 0) -> Event:
    return Event(FAULT + at, "post", False, cause, OLD, 0.01, detail="no", user=user)


def a_log() -> WorkloadLog:
    """Two users: writes at the old site, 3 s of failures, then writes at the new one."""
    return WorkloadLog([
        ack(-2.0), ack(-1.5, user=1), ack(-1.0, kind="media"),
        fail(0.5), fail(1.0, "timeout", user=1), fail(2.0),
        ack(3.0, NEW), ack(3.5, NEW, user=1), ack(4.0, NEW, kind="media"),
        Event(FAULT + 4.5, "timeline", True, None, NEW, 0.01),
    ])


def observed(scenario: str = "termination-notice", **changes: object) -> measure.Observed:
    values: dict[str, object] = dict(
        scenario=SCENARIOS[scenario], deployment="/srv/failover.yaml", from_site="aws",
        to_site="hetzner", to_address=NEW,
        started=datetime(2026, 11, 23, 10, 0, tzinfo=UTC), fault_at=FAULT, ended=FAULT + 6,
        detected_at=FAULT + 0.25, run=a_run(FAULT + 2.5), log=a_log(),
        dns_changes=(DnsChange(FAULT - 5, (OLD,), "bind"), DnsChange(FAULT + 2.75, (NEW,))),
        notes=((FAULT, "drill", "notice delivered"), (FAULT + 3, "workload", "first write")),
        refusals=(), losses=Losses((), ()), promise=Promise(15.0, 0),
        workload=WorkloadSpec(rate=20), notice_seconds=20.0,
    )
    values.update(changes)
    return measure.Observed(**values)  # type: ignore[arg-type]


def test_a_termination_notice_is_measured_and_judged_on_its_deadline() -> None:
    report = measure.report(observed())
    assert (report.scenario, report.from_site, report.to_site) == (
        "termination-notice", "aws", "hetzner")
    assert report.rto_seconds == 3.0  # the first write acknowledged at the new address
    assert report.detection_seconds == 0.25 and report.dns_switch_seconds == 2.75
    assert report.write_unavailable_seconds == 5.0  # user 0: from its ack at -2 to +3
    assert report.longest_write_outage_seconds == 5.0
    assert (report.acked_writes, report.acked_posts, report.acked_media) == (6, 4, 2)
    assert report.lost_writes == 0 and report.requests == 10
    assert report.errors_by_cause == {"read-only": 2, "timeout": 1}
    assert [v.objective for v in report.verdicts] == [
        "rto_seconds", "rpo_writes", "run", "move_finished_seconds"]
    assert report.verdicts[-1] == Verdict("move_finished_seconds", 20.0, 2.5, met=True)
    assert report.objectives_met and report.failback is None
    assert report.fault_at == "1970-01-01T00:16:40.000+00:00"
    assert list(report.to_dict()) == KEYS


def test_the_timeline_merges_notes_dns_answers_and_steps_in_time_order() -> None:
    report = measure.report(observed())
    assert [(e.at, e.source) for e in report.timeline] == [
        (-5.0, "dns"), (0.0, "drill"), (0.6, "engine"), (1.1, "engine"), (2.75, "dns"),
        (3.0, "workload")]
    assert report.timeline[-2].event == f"authoritative answer: {NEW}"
    assert [(s.action, s.started, s.seconds, s.outcome) for s in report.steps] == [
        ("fence", 0.6, 0.5, "ok"), ("promote", 1.1, 1.4, "ok")]
    assert report.run is not None and report.run.warnings == ("aws: slow",)


def test_a_blackout_is_held_to_the_promised_rpo_and_has_no_deadline() -> None:
    losses = Losses(("p-1", "p-2"), ("m-1",), ("media objects not checked: gone",))
    report = measure.report(observed("provider-blackout", losses=losses,
                                     promise=Promise(15.0, 5), run=a_run(FAULT + 30)))
    assert [v.objective for v in report.verdicts] == [
        "rto_seconds", "rpo_writes", "media_lost_2s_before_fault", "run", "split_brain_writes"]
    assert report.verdicts[1] == Verdict("rpo_writes", 5, 3, met=True)
    assert report.lost_write_ids == ("p-1", "p-2", "m-1")
    assert (report.lost_posts, report.lost_media) == (2, 1)
    assert report.notes == ("media objects not checked: gone",)


def test_a_blackout_fails_on_media_lost_that_was_acknowledged_before_the_grace() -> None:
    log = WorkloadLog([ack(-5.0, kind="media"), ack(-1.0, kind="media"), ack(3.0, NEW)])
    # Both rows lost (the database's loss); the older one's object too (the copies').
    losses = Losses((), ("media--5.0", "media--1.0"), (), ("media--5.0",))
    report = measure.report(observed("provider-blackout", losses=losses, log=log,
                                     promise=Promise(15.0, 5), run=a_run(FAULT + 30)))
    assert report.verdicts[2] == Verdict("media_lost_2s_before_fault", 0, 1, met=False)


def test_lost_writes_after_a_notice_fail_the_drill() -> None:
    report = measure.report(observed(losses=Losses(("p-1",), ())))
    assert report.verdicts[1] == Verdict("rpo_writes", 0, 1, met=False)
    assert not report.objectives_met


def test_no_run_no_recovery_no_detection() -> None:
    report = measure.report(observed(run=None, detected_at=None, log=WorkloadLog([ack(-1.0)]),
                                     refusals=("hetzner is 40 MB behind",)))
    assert report.rto_seconds is None and report.detection_seconds is None
    assert report.run is None and report.steps == ()
    assert [v.objective for v in report.verdicts] == ["rto_seconds", "rpo_writes", "run"]
    assert not report.objectives_met
    assert report.notes == ("the engine refused 1 time(s) before acting: "
                            "hetzner is 40 MB behind",)


def test_the_dns_switch_is_when_the_servers_first_name_the_new_site() -> None:
    changes = (DnsChange(1.0, (OLD,)), DnsChange(5.0, ()), DnsChange(7.0, (NEW,)))
    assert measure.first_answer(changes, NEW, after=2.0) == 7.0
    assert measure.first_answer(changes, NEW, after=8.0) == 8.0  # already named by then
    assert measure.first_answer(changes, "127.0.0.99", after=0.0) is None
    assert measure.first_answer((), NEW, after=0.0) is None


def test_a_client_sent_to_the_new_site_before_the_watcher_looked_dates_the_switch() -> None:
    changes = (DnsChange(1.0, (OLD,)), DnsChange(7.0, (NEW,)))
    early = Event(6.9, "post", True, None, NEW, 0.2, id="p")  # began at 6.7, told NEW
    assert measure.dns_switched(changes, [early], NEW, after=2.0) == 6.7
    assert measure.dns_switched(changes, [ack(6.0 - FAULT)], NEW, after=2.0) == 7.0  # told OLD
    assert measure.dns_switched((), [early], NEW, after=6.8) is None  # began before "after"
    assert measure.dns_switched((), [], NEW, after=0.0) is None


def test_the_series_counts_each_bin_from_the_first_request() -> None:
    series = measure.series(a_log().snapshot(), FAULT, FAULT - 2.0, FAULT + 6)
    assert series == Series(1.0, -2.0, (2, 1, 0, 0, 0, 2, 1, 0), (0, 0, 0, 0, 0, 0, 1, 0),
                            {"read-only": (0, 0, 1, 0, 1, 0, 0, 0),
                             "timeout": (0, 0, 0, 1, 0, 0, 0, 0)})


# -- split-brain writes ------------------------------------------------------------------------


def answered(at: float, site: str | None, *, ok: bool = True, kind: str = "post",
             address: str = OLD) -> Event:
    """A write sent to ``address`` that the app at ``site`` answered (None: it did not say)."""
    return Event(FAULT + at, kind, ok, None if ok else "5xx", address, 0.01,
                 id=f"{site}-{kind}-{at}" if ok else None, site=site)


def test_split_brain_writes_are_the_old_sites_acks_after_the_promotion() -> None:
    promoted = FAULT + 2.5
    events = [
        answered(1.0, "aws"),  # before the promotion: the old primary still was the primary
        answered(2.5, "aws"),  # at the very moment: not after
        answered(3.0, "aws"), answered(4.0, "aws", kind="media"),
        answered(3.5, "aws", ok=False),  # refused: nothing acknowledged
        answered(3.2, "hetzner", address=NEW), answered(3.7, "hetzner"),  # a cached address
        Event(FAULT + 3.9, "timeline", True, None, OLD, 0.01, site="aws"),  # a read
    ]
    split = measure.split_brain_writes(events, "aws", promoted)
    assert [e.id for e in split] == ["aws-post-3.0", "aws-media-4.0"]
    assert measure.split_brain_writes(events, "aws", None) == []  # nothing was promoted


def test_an_answer_that_names_no_site_counts_by_the_old_primarys_address() -> None:
    events = [answered(3.0, None), answered(4.0, None, address=NEW)]
    assert measure.split_brain_writes(events, "aws", FAULT + 2.5) == []  # address unknown
    split = measure.split_brain_writes(events, "aws", FAULT + 2.5, old_address=OLD)
    assert [e.at for e in split] == [FAULT + 3.0]


def test_the_promotion_is_when_the_journals_promote_step_began_if_it_ended_well() -> None:
    # The new primary may take writes from inside the step: its start is what counts.
    assert measure.promoted_at(a_run(FAULT + 2.5)) == FAULT + 1.1
    assert measure.promoted_at(a_run(FAULT + 2.5, "failed")) is None
    assert measure.promoted_at(a_run(None)) is None  # still promoting
    assert measure.promoted_at(None) is None


def test_the_report_counts_names_and_judges_split_brain_writes() -> None:
    scenario = replace(SCENARIOS["provider-blackout"], expects=(no_split_brain_writes,))
    log = WorkloadLog([*a_log().snapshot(), answered(5.0, "aws"), answered(5.5, "aws")])
    report = measure.report(replace(observed(log=log), scenario=scenario))
    assert report.split_brain_writes == 2
    assert report.split_brain_write_ids == ("aws-post-5.0", "aws-post-5.5")
    assert report.verdicts[-1] == Verdict("split_brain_writes", 0, 2, met=False)
    assert not report.objectives_met
    first = [e for e in report.timeline if "split brain" in e.event]
    assert [(e.at, e.source) for e in first] == [(5.0, "workload")]
    assert first[0].event == ("first of 2 write(s) acknowledged by aws after hetzner was "
                              "promoted (split brain)")

    clean = measure.report(replace(observed(), scenario=scenario))
    assert clean.split_brain_writes == 0 and clean.split_brain_write_ids == ()
    assert clean.verdicts[-1] == Verdict("split_brain_writes", 0, 0, met=True)
