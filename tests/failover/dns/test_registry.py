"""The DNS plane's registry: every kind's settings, provider and probe reader, by its tag."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from failover.config import parse_config
from failover.dns.authoritative import AuthoritativeReader
from failover.dns.registry import KINDS, ApiReader, DnsSettings, build_providers, build_reader
from failover.dns.rfc2136 import Rfc2136Provider, Rfc2136Settings
from failover.dns.route53 import Route53Provider, Route53Settings
from failover.dns.tsig import TsigKey
from failover.secretfiles import write_private
from infra.lab.config import lab_config
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths

BIND9 = Rfc2136Settings(kind="rfc2136", server="192.0.2.53", port=5353, zone="example.test.",
                        tsig_key_file=Path("/nonexistent/tsig.key"))
ROUTE53 = Route53Settings(kind="route53", zone="example.test.",
                          endpoint_url="http://192.0.2.80:5000", timeout=10.0)


def test_the_union_the_config_accepts_is_exactly_the_registered_kinds() -> None:
    assert set(get_args(DnsSettings)) == {kind.settings for kind in KINDS.values()}
    assert sorted(KINDS) == ["rfc2136", "route53"]
    for tag, kind in KINDS.items():
        assert kind.tag == tag
        assert kind.settings.model_fields["kind"].annotation.__args__ == (tag,)


def test_the_configured_providers_are_built_by_their_kind_in_the_files_order(
    tmp_path: Path,
) -> None:
    data = lab_config(LabLayout(), LabPaths(tmp_path))
    data["dns_providers"] = {"route53": data["dns_providers"]["route53"],
                             "bind9": data["dns_providers"]["bind9"]}
    config = parse_config(data, "cfg", tmp_path)
    # Both read their secrets when made: a missing key is a ConfigError at start.
    (tmp_path / "secrets").mkdir()
    TsigKey.generate("lab-key.").save(tmp_path / "secrets" / "tsig.key")
    write_private(tmp_path / "secrets" / "aws-credentials",
                  "[default]\naws_access_key_id = AKIATEST\naws_secret_access_key = x\n")
    providers = build_providers(config.dns_providers)
    assert [(type(p), p.name) for p in providers] == [
        (Route53Provider, "route53"), (Rfc2136Provider, "bind9")]


def test_an_rfc2136_server_is_read_directly_from_the_vantage_points_address() -> None:
    reader = build_reader("bind9", BIND9, "127.99.2.1", 1.0)
    assert isinstance(reader, AuthoritativeReader)
    assert (reader.where, reader.source, reader.provider) == ("192.0.2.53:5353", "127.99.2.1",
                                                              "bind9")


@pytest.mark.parametrize(("probe_timeout", "calls"), [(1.0, 1.0), (30.0, 10.0)])
def test_route53_is_read_through_its_api_within_the_probes_timeout(
    probe_timeout: float, calls: float,
) -> None:
    reader = build_reader("route53", ROUTE53, "127.99.2.1", probe_timeout)
    assert isinstance(reader, ApiReader)
    assert reader.where == "api http://192.0.2.80:5000"
    assert isinstance(reader.provider, Route53Provider)
    assert reader.provider.name == "route53"
    assert reader.provider.settings.timeout == calls  # the smaller of its own and the probe's
