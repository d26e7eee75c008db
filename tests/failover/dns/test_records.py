"""Records, diffs and plans: plain data, no network."""

from __future__ import annotations

import json

import pytest

from failover.dns.publish import with_ttl
from failover.dns.records import Create, Delete, Plan, Record, Update, diff
from failover.exceptions import UnsafePlan

ZONE = "lab.failover.test."
APP = f"app.{ZONE}"


def a(name: str, *values: str, ttl: int = 5) -> Record:
    return Record(name, "A", ttl, values)


def by_key(*records: Record) -> dict[tuple[str, str], Record]:
    return {r.key: r for r in records}


def test_records_are_normalised() -> None:
    record = Record("App.Lab.Failover.Test", "a", 5, ("127.0.20.1", "127.0.10.1"))
    assert record.name == APP
    assert record.rtype == "A"
    assert record.values == ("127.0.10.1", "127.0.20.1")
    assert Record(APP, "AAAA", 5, ("2001:db8:0::1",)).values == ("2001:db8::1",)
    assert Record(APP, "CNAME", 5, ("Web.Example.COM",)).values == ("web.example.com.",)
    assert Record(APP, "TXT", 5, ("hello",)).values == ('"hello"',)


@pytest.mark.parametrize(
    ("name", "rtype", "ttl", "values", "message"),
    [
        (APP, "MX", 5, ("10 mx.",), "record type 'MX'"),
        (APP, "A", -1, ("127.0.0.1",), "TTL -1"),
        (APP, "A", 5, (), "non-empty"),
        (APP, "A", 5, ("not-an-address",), "not a valid A value"),
        (APP, "CNAME", 5, ("a.example.", "b.example."), "only one value"),
        ("bad..name", "A", 5, ("127.0.0.1",), "not a valid DNS name"),
    ],
)
def test_invalid_records_are_refused(
    name: str, rtype: str, ttl: int, values: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Record(name, rtype, ttl, values)


def test_diff_creates_updates_and_deletes_in_a_safe_order() -> None:
    kept = a(f"kept.{ZONE}", "127.0.0.1")
    existing = by_key(a(APP, "127.0.10.1"), kept, a(f"old.{ZONE}", "127.0.0.9"))
    desired = [a(APP, "127.0.20.1"), kept, a(f"new.{ZONE}", "127.0.0.2")]
    changes = diff(existing, desired)
    assert [type(c) for c in changes] == [Delete, Update, Create]  # deletes first
    assert [c.key[0] for c in changes] == [f"old.{ZONE}", APP, f"new.{ZONE}"]


def test_diff_of_identical_records_is_empty() -> None:
    record = a(APP, "127.0.10.1")
    assert diff(by_key(record), [a(APP.upper(), "127.0.10.1")]) == ()


def test_diff_sees_a_ttl_change_as_an_update() -> None:
    (change,) = diff(by_key(a(APP, "127.0.10.1", ttl=300)), [a(APP, "127.0.10.1", ttl=5)])
    assert isinstance(change, Update)


def test_diff_refuses_contradictory_desires() -> None:
    with pytest.raises(ValueError, match="desired twice"):
        diff({}, [a(APP, "127.0.10.1"), a(APP, "127.0.20.1")])


def test_changes_read_as_sentences() -> None:
    old, new = a(APP, "127.0.10.1"), a(APP, "127.0.20.1")
    assert str(Update(old, new)) == (
        "update app.lab.failover.test. A: 127.0.10.1 (ttl 5) -> 127.0.20.1 (ttl 5)"
    )
    assert str(Create(new)) == "create app.lab.failover.test. A: 127.0.20.1 (ttl 5)"
    assert str(Delete(old)) == "delete app.lab.failover.test. A: 127.0.10.1 (ttl 5)"


def _plan() -> Plan:
    return Plan("bind9", (Update(a(APP, "127.0.10.1"), a(APP, "127.0.20.1")),), ZONE)


def test_a_plan_prints_its_changes() -> None:
    assert str(_plan()) == (
        "bind9 (lab.failover.test.): 1 change\n"
        "  update app.lab.failover.test. A: 127.0.10.1 (ttl 5) -> 127.0.20.1 (ttl 5)"
    )
    assert str(Plan("bind9", (), ZONE)) == "bind9 (lab.failover.test.): no changes"
    assert Plan("bind9", ()).empty and not _plan().empty


def test_a_plan_round_trips_through_json_with_its_checksum() -> None:
    plan = _plan()
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["checksum"] == plan.checksum()
    assert data["changes"][0]["action"] == "update"
    assert Plan.from_dict(data) == plan


def test_the_checksum_is_stable_and_sensitive() -> None:
    assert _plan().checksum() == _plan().checksum()
    assert len(_plan().checksum()) == 64
    other = Plan("route53", _plan().changes, ZONE)
    assert other.checksum() != _plan().checksum()
    lowered = Plan("bind9", (Update(a(APP, "127.0.10.1"), a(APP, "127.0.20.1", ttl=6)),), ZONE)
    assert lowered.checksum() != _plan().checksum()


def test_a_tampered_plan_is_refused() -> None:
    data = _plan().to_dict()
    data["changes"][0]["desired"]["values"] = ["127.0.66.6"]
    with pytest.raises(UnsafePlan, match="altered"):
        Plan.from_dict(data)


def test_apex_ns_and_soa_changes_are_refused_always() -> None:
    ns_old = Record(ZONE, "NS", 300, ("ns1.lab.failover.test.",))
    ns_new = Record(ZONE, "NS", 300, ("ns2.lab.failover.test.",))
    plan = Plan("bind9", (Update(ns_old, ns_new),), ZONE)
    with pytest.raises(UnsafePlan, match="NS records"):
        plan.raise_if_unsafe()
    with pytest.raises(UnsafePlan, match="NS records"):
        plan.raise_if_unsafe(allow_delete=True)
    soa = Record(ZONE, "SOA", 300, ("ns1 hostmaster 1 3600 600 86400 5",))
    with pytest.raises(UnsafePlan, match="SOA records"):
        Plan("bind9", (Delete(soa),), ZONE).raise_if_unsafe(allow_delete=True)


def test_ns_below_the_apex_is_a_delegation_and_allowed() -> None:
    ns = Record(f"sub.{ZONE}", "NS", 300, ("ns.example.",))
    Plan("bind9", (Create(ns),), ZONE).raise_if_unsafe()


def test_deletes_are_refused_unless_allowed() -> None:
    plan = Plan("bind9", (Delete(a(f"old.{ZONE}", "127.0.0.9")),), ZONE)
    with pytest.raises(UnsafePlan, match="allow_delete"):
        plan.raise_if_unsafe()
    plan.raise_if_unsafe(allow_delete=True)
    _plan().raise_if_unsafe()  # a plain update is fine


def test_with_ttl_changes_only_the_ttl() -> None:
    records = (a(APP, "127.0.10.1", ttl=300), Record(f"t.{ZONE}", "TXT", 300, ("x",)))
    lowered = with_ttl(records, 5)
    assert [r.ttl for r in lowered] == [5, 5]
    assert [(r.key, r.values) for r in lowered] == [(r.key, r.values) for r in records]
