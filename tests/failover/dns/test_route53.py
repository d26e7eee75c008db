"""The Route 53 provider against the lab's moto server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from failover.dns.exceptions import PrerequisiteFailed, ProviderUnreachable
from failover.dns.records import Create, Delete, Record, Update
from failover.dns.route53 import Route53Provider, load_credentials, translate
from failover.exceptions import ConfigError, ProviderError
from failover.secretfiles import write_private
from infra.lab.moto import client as moto_client
from tests.conftest import RunningLab, free_port
from tests.failover.dns.conftest import Writer, route53_settings

pytestmark = pytest.mark.lab


def test_plan_only_reads_and_shows_create_update_delete(
    route53: Route53Provider, fresh_name: str
) -> None:
    gone, kept = f"gone-{fresh_name}", f"kept-{fresh_name}"
    route53.apply(route53.plan([Record(gone, "A", 5, ("127.0.10.1",)),
                                Record(kept, "TXT", 5, ("v1",))]))
    desired = [Record(fresh_name, "A", 5, ("127.0.10.1",)), Record(kept, "TXT", 5, ("v2",))]
    plan = route53.plan(desired, managed=[(gone, "A")])
    assert [type(c) for c in plan.changes] == [Delete, Update, Create]
    assert route53.records([(fresh_name, "A")]) == {}  # nothing was written by planning
    assert (gone, "A") in route53.records([(gone, "A")])


def test_apply_then_verify_matches(route53: Route53Provider, fresh_name: str) -> None:
    desired = [Record(fresh_name, "A", 5, ("127.0.20.1", "127.0.20.2")),
               Record(fresh_name, "TXT", 5, ("owner=failover",))]
    assert not route53.verify(desired).ok
    route53.apply(route53.plan(desired))
    result = route53.verify(desired)
    assert result.ok, str(result)
    assert result.servers[0].server.startswith("api http://")
    assert route53.plan(desired).empty


def test_ttl_lowered_then_restored(route53: Route53Provider, fresh_name: str) -> None:
    # Restoring re-creates a record set exactly as it was once before, which
    # moto's journal-based CREATE check would refuse; see route53.py.
    normal = [Record(fresh_name, "A", 300, ("127.0.10.1",))]
    for ttl in (300, 5, 300, 5, 300):
        desired = [Record(r.name, r.rtype, ttl, r.values) for r in normal]
        route53.apply(route53.plan(desired))
        assert route53.verify(desired).ok
    assert route53.records([(fresh_name, "A")])[(fresh_name, "A")].ttl == 300


def test_an_update_whose_record_changed_since_the_plan_is_refused(
    route53: Route53Provider, fresh_name: str, other_writer_route53: Writer
) -> None:
    route53.apply(route53.plan([Record(fresh_name, "A", 5, ("127.0.10.1",))]))
    plan = route53.plan([Record(fresh_name, "A", 5, ("127.0.20.1",))])
    theirs = Record(fresh_name, "A", 5, ("127.0.30.1",))
    other_writer_route53(theirs)
    with pytest.raises(PrerequisiteFailed, match="changed since the plan was made") as caught:
        route53.apply(plan)
    assert caught.value.provider == "route53"
    assert route53.records([(fresh_name, "A")]) == {theirs.key: theirs}


def test_a_create_refused_when_someone_created_the_record_first(
    route53: Route53Provider, fresh_name: str, other_writer_route53: Writer
) -> None:
    plan = route53.plan([Record(fresh_name, "A", 5, ("127.0.20.1",))])
    theirs = Record(fresh_name, "A", 5, ("127.0.30.1",))
    other_writer_route53(theirs)
    with pytest.raises(PrerequisiteFailed, match=r"now 127\.0\.30\.1"):
        route53.apply(plan)
    assert route53.records([(fresh_name, "A")]) == {theirs.key: theirs}


def _client_error(code: str, message: str, request_id: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message},
                     "ResponseMetadata": {"RequestId": request_id}}
    return ClientError(response, "ChangeResourceRecordSets")


def test_route53s_own_refusal_becomes_prerequisite_failed() -> None:
    # What AWS answers when a DELETE no longer matches (moto does not check this).
    refusal = _client_error(
        "InvalidChangeBatch",
        "[Tried to delete resource record set [name='app.example.com.', type='A'] "
        "but the values provided do not match the current values]",
        "req-123",
    )
    error = translate(refusal, "route53", "apply the change batch", "aws", 10)
    assert isinstance(error, PrerequisiteFailed)
    assert (error.code, error.request_id) == ("InvalidChangeBatch", "req-123")
    denied = _client_error("AccessDenied", "no", "req-456")
    error = translate(denied, "route53", "apply the change batch", "aws", 10)
    assert type(error) is ProviderError
    assert "AccessDenied" in str(error) and "credentials" in str(error)


def test_an_endpoint_that_does_not_answer_is_one_clear_error(
    lab: RunningLab, fresh_name: str
) -> None:
    gone = Route53Provider("route53", route53_settings(
        lab, endpoint_url=f"http://127.0.99.1:{free_port()}", timeout=1.0,
    ))
    with pytest.raises(ProviderUnreachable, match=r"cannot connect to route53 \(Route 53 at http"):
        gone.plan([Record(fresh_name, "A", 5, ("127.0.10.1",))])


def test_a_missing_zone_is_a_config_error(lab: RunningLab) -> None:
    provider = Route53Provider("route53", route53_settings(lab, zone="nowhere.test."))
    with pytest.raises(ConfigError, match="no public hosted zone"):
        provider.records([("app.nowhere.test.", "A")])


def test_the_credentials_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    write_private(path, "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s\n")
    assert load_credentials(path)["aws_access_key_id"] == "AKIA1"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_credentials(path)
    path.chmod(0o600)
    path.write_text("[default]\naws_access_key_id = AKIA1\n")
    with pytest.raises(ConfigError, match="aws_secret_access_key"):
        load_credentials(path)


def test_a_zone_created_again_is_found_again(lab: RunningLab) -> None:
    """A zone deleted and created anew has a new id; the provider must not keep the old."""
    zone = f"again-{free_port()}.test."
    route53_api = moto_client(lab.layout, lab.secrets, lab.layout.route53_endpoint, "route53")

    def create() -> str:
        made = route53_api.create_hosted_zone(Name=zone, CallerReference=str(uuid.uuid4()))
        return str(made["HostedZone"]["Id"])

    first = create()
    provider = Route53Provider("route53", route53_settings(lab, zone=zone))
    record = Record(f"app.{zone}", "A", 5, ("127.0.10.1",))
    assert provider.records([record.key]) == {}  # looks the zone up, keeps its id
    route53_api.delete_hosted_zone(Id=first)
    second = create()
    assert second != first
    provider.apply(provider.plan([record]))  # the old id is refused; the new one is found
    assert provider.zone_id() == second
    assert provider.verify([record]).ok
