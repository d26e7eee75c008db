"""The RFC 2136 provider against the lab's real BIND 9."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from failover.dns.exceptions import PrerequisiteFailed, ProviderUnreachable
from failover.dns.records import Create, Delete, Plan, Record, Update
from failover.dns.rfc2136 import Rfc2136Provider, Rfc2136Settings
from failover.exceptions import ConfigError, ProviderError, UnsafePlan
from tests.conftest import RunningLab, free_port
from tests.failover.dns.conftest import Writer, bind9_settings

pytestmark = pytest.mark.lab


def test_plan_only_reads_and_shows_create_update_delete(
    lab: RunningLab, bind9: Rfc2136Provider, fresh_name: str
) -> None:
    gone, kept = f"gone-{fresh_name}", f"kept-{fresh_name}"
    bind9.apply(bind9.plan([Record(gone, "A", 5, ("127.0.10.1",)),
                            Record(kept, "TXT", 5, ("v1",))]))
    desired = [Record(fresh_name, "A", 5, ("127.0.10.1",)), Record(kept, "TXT", 5, ("v2",))]
    plan = bind9.plan(desired, managed=[(gone, "A")])
    assert [type(c) for c in plan.changes] == [Delete, Update, Create]
    assert lab.resolve(fresh_name) == []  # nothing was written by planning
    assert lab.resolve(gone) == ["127.0.10.1"]
    assert "create " + fresh_name in str(plan)


def test_apply_then_verify_matches(
    lab: RunningLab, bind9: Rfc2136Provider, fresh_name: str
) -> None:
    desired = [Record(fresh_name, "A", 5, ("127.0.10.1", "127.0.10.2")),
               Record(fresh_name, "TXT", 5, ("owner=failover",))]
    before = bind9.verify(desired)
    assert not before.ok
    assert "got nothing" in before.servers[0].problems[0]
    bind9.apply(bind9.plan(desired))
    after = bind9.verify(desired)
    assert after.ok, str(after)
    assert after.servers[0].server == f"{lab.layout.dns_address}:{lab.layout.dns_port}"
    assert set(after.servers[0].answered) == set(desired)
    assert lab.resolve(fresh_name) == ["127.0.10.1", "127.0.10.2"]
    assert bind9.plan(desired).empty  # applying is idempotent


def test_apply_logs_a_structured_line(
    bind9: Rfc2136Provider, fresh_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="failover.dns"):
        bind9.apply(bind9.plan([Record(fresh_name, "A", 5, ("127.0.10.1",))]))
    assert any(
        m.startswith("event=dns.apply provider=bind9 changes=1 outcome=applied")
        for m in caplog.messages
    ), caplog.messages


def test_an_update_whose_record_changed_since_the_plan_is_refused(
    lab: RunningLab, bind9: Rfc2136Provider, fresh_name: str, other_writer_bind: Writer
) -> None:
    bind9.apply(bind9.plan([Record(fresh_name, "A", 5, ("127.0.10.1",))]))
    plan = bind9.plan([Record(fresh_name, "A", 5, ("127.0.20.1",))])
    other_writer_bind(Record(fresh_name, "A", 5, ("127.0.30.1",)))
    with pytest.raises(PrerequisiteFailed, match="changed since the plan was made") as caught:
        bind9.apply(plan)
    assert caught.value.code == "NXRRSET"
    assert caught.value.provider == "bind9"
    assert lab.resolve(fresh_name) == ["127.0.30.1"]  # the other writer's value stands


def test_a_create_refused_when_someone_created_the_record_first(
    lab: RunningLab, bind9: Rfc2136Provider, fresh_name: str, other_writer_bind: Writer
) -> None:
    plan = bind9.plan([Record(fresh_name, "A", 5, ("127.0.20.1",))])
    other_writer_bind(Record(fresh_name, "A", 5, ("127.0.30.1",)))
    with pytest.raises(PrerequisiteFailed) as caught:
        bind9.apply(plan)
    assert caught.value.code == "YXRRSET"
    assert lab.resolve(fresh_name) == ["127.0.30.1"]


def test_a_delete_refused_when_the_record_changed(
    lab: RunningLab, bind9: Rfc2136Provider, fresh_name: str, other_writer_bind: Writer
) -> None:
    bind9.apply(bind9.plan([Record(fresh_name, "A", 5, ("127.0.10.1",))]))
    plan = bind9.plan([], managed=[(fresh_name, "A")])
    assert [type(c) for c in plan.changes] == [Delete]
    other_writer_bind(Record(fresh_name, "A", 5, ("127.0.30.1",)))
    with pytest.raises(PrerequisiteFailed):
        bind9.apply(plan)
    assert lab.resolve(fresh_name) == ["127.0.30.1"]


def test_a_wrong_tsig_key_is_refused_and_changes_nothing(
    lab: RunningLab, fresh_name: str, wrong_tsig_key_file: Path
) -> None:
    forged = Rfc2136Provider("bind9", bind9_settings(lab, tsig_key_file=wrong_tsig_key_file))
    plan = forged.plan([Record(fresh_name, "A", 5, ("127.0.66.6",))])  # reads need no key
    with pytest.raises(ProviderError, match="refused the update: wrong TSIG key") as caught:
        forged.apply(plan)
    assert not isinstance(caught.value, PrerequisiteFailed)
    assert caught.value.code == "BADSIG"
    assert lab.resolve(fresh_name) == []


def test_a_server_that_does_not_answer_times_out_clearly(
    lab: RunningLab, fresh_name: str
) -> None:
    silent = Rfc2136Provider("bind9", bind9_settings(lab, port=free_port(), timeout=0.3))
    with pytest.raises(ProviderUnreachable, match=r"no answer from bind9 at .* within 0.3s"):
        silent.plan([Record(fresh_name, "A", 5, ("127.0.10.1",))])
    plan = Plan("bind9", (Create(Record(fresh_name, "A", 5, ("127.0.10.1",))),), lab.layout.zone)
    with pytest.raises(ProviderUnreachable, match="cannot reach bind9"):
        silent.apply(plan)  # TCP to a closed port is refused at once


def test_a_plan_for_another_provider_or_unreviewed_is_refused(
    bind9: Rfc2136Provider, fresh_name: str
) -> None:
    plan = bind9.plan([Record(fresh_name, "A", 5, ("127.0.10.1",))])
    with pytest.raises(UnsafePlan, match="made for DNS provider 'route53'"):
        bind9.apply(Plan("route53", plan.changes, plan.zone))
    with pytest.raises(UnsafePlan, match="not the one reviewed"):
        bind9.apply(plan, checksum="0" * 64)


def test_records_outside_the_zone_or_of_unsupported_types_are_refused(
    bind9: Rfc2136Provider,
) -> None:
    with pytest.raises(ConfigError, match="not in zone"):
        bind9.plan([Record("www.example.com.", "A", 5, ("127.0.10.1",))])
    with pytest.raises(ConfigError, match="supports only"):
        bind9.records([(bind9.zone, "SOA")])


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Rfc2136Settings(kind="rfc2136", server="ns1.example.", zone="example.",
                        tsig_key_file=tmp_path / "k")
    settings = Rfc2136Settings(kind="rfc2136", server="127.0.0.1", zone="Example.COM",
                               tsig_key_file=tmp_path / "missing.key")
    assert settings.zone == "example.com."
    with pytest.raises(ConfigError, match="cannot read TSIG key file"):
        Rfc2136Provider("bind9", settings)
