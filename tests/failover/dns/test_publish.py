"""Publishing to every DNS provider of the lab at once: BIND 9 and Route 53."""

from __future__ import annotations

import json

import pytest

from failover.dns.base import DnsProvider
from failover.dns.publish import publish, with_ttl
from failover.dns.records import Record
from failover.dns.rfc2136 import Rfc2136Provider
from failover.dns.route53 import Route53Provider
from tests.conftest import RunningLab, free_port
from tests.failover.dns.conftest import bind9_settings, route53_settings

pytestmark = pytest.mark.lab


def test_publish_applies_and_verifies_at_every_provider(
    lab: RunningLab, bind9: Rfc2136Provider, route53: Route53Provider, fresh_name: str
) -> None:
    desired = [Record(fresh_name, "A", 5, ("127.0.10.1",))]
    result = publish([bind9, route53], desired)
    assert result.ok, str(result)
    for name in ("bind9", "route53"):
        outcome = result.outcome(name)
        assert outcome.applied and outcome.verify is not None and outcome.verify.ok
    assert lab.resolve(fresh_name) == ["127.0.10.1"]
    assert json.loads(json.dumps(result.to_dict()))["ok"] is True
    again = publish([bind9, route53], desired)
    assert again.ok and not any(o.applied for o in again.outcomes)  # nothing left to do


def test_a_dry_run_plans_everywhere_and_changes_nothing(
    lab: RunningLab, bind9: Rfc2136Provider, route53: Route53Provider, fresh_name: str
) -> None:
    result = publish([bind9, route53], [Record(fresh_name, "A", 5, ("127.0.10.1",))],
                     dry_run=True)
    assert result.ok and result.dry_run
    assert all(o.plan is not None and len(o.plan.changes) == 1 for o in result.outcomes)
    assert "dry run" in str(result)
    assert lab.resolve(fresh_name) == []
    assert route53.records([(fresh_name, "A")]) == {}


def test_ttl_is_lowered_then_restored_at_both_providers(
    bind9: Rfc2136Provider, route53: Route53Provider, fresh_name: str
) -> None:
    normal = (Record(fresh_name, "A", 300, ("127.0.10.1",)),)
    assert publish([bind9, route53], normal).ok
    lowered = publish([bind9, route53], with_ttl(normal, 5))
    assert lowered.ok, str(lowered)
    for provider in (bind9, route53):
        assert provider.records([(fresh_name, "A")])[(fresh_name, "A")].ttl == 5
    restored = publish([bind9, route53], normal)
    assert restored.ok, str(restored)
    for provider in (bind9, route53):
        assert provider.records([(fresh_name, "A")])[(fresh_name, "A")].ttl == 300


@pytest.mark.parametrize("silent_kind", ["rfc2136", "route53"])
def test_a_provider_that_does_not_answer_does_not_stop_the_others(
    lab: RunningLab, bind9: Rfc2136Provider, route53: Route53Provider, fresh_name: str,
    silent_kind: str,
) -> None:
    healthy: DnsProvider
    silent: DnsProvider
    if silent_kind == "rfc2136":  # a closed UDP port: the read times out
        silent = Rfc2136Provider("bind9-b", bind9_settings(lab, port=free_port(), timeout=0.5))
        healthy = route53
    else:  # nothing listens there: the connection is refused
        silent = Route53Provider("route53-b", route53_settings(
            lab, endpoint_url=f"http://127.0.99.1:{free_port()}", timeout=1.0))
        healthy = bind9
    desired = [Record(fresh_name, "A", 5, ("127.0.20.1",))]
    result = publish([silent, healthy], desired)
    assert not result.ok
    assert result.failed == (silent.name,)
    failed = result.outcome(silent.name)
    assert failed.error is not None and not failed.applied
    assert silent.name in failed.error
    assert f"{silent.name}: FAILED" in str(result)
    assert result.outcome(healthy.name).ok
    assert healthy.verify(desired).ok


def test_unsafe_plans_are_refused_per_provider(
    bind9: Rfc2136Provider, route53: Route53Provider, fresh_name: str
) -> None:
    record = Record(fresh_name, "A", 5, ("127.0.10.1",))
    assert publish([bind9, route53], [record]).ok
    refused = publish([bind9, route53], [], managed=[record.key])
    assert refused.failed == ("bind9", "route53")
    assert all("allow_delete" in (o.error or "") for o in refused.outcomes)
    assert bind9.records([record.key]) == {record.key: record}  # nothing was deleted
    allowed = publish([bind9, route53], [], managed=[record.key], allow_delete=True)
    assert allowed.ok, str(allowed)
    assert bind9.records([record.key]) == {} and route53.records([record.key]) == {}


def test_an_apex_ns_change_is_refused_before_anything_is_touched(
    lab: RunningLab, bind9: Rfc2136Provider
) -> None:
    apex_ns = (lab.layout.zone, "NS")
    before = bind9.records([apex_ns])[apex_ns]
    hijack = Record(lab.layout.zone, "NS", before.ttl, (f"evil.{lab.layout.zone}",))
    result = publish([bind9], [hijack], allow_delete=True)
    assert result.failed == ("bind9",)
    assert "NS records" in (result.outcome("bind9").error or "")
    assert bind9.records([apex_ns]) == {apex_ns: before}
