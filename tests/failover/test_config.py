"""Configuration files: valid ones load, bad ones are refused with every problem named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from failover.config import load_config, parse_config
from failover.exceptions import ConfigError
from infra.lab.config import lab_config
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "failover.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _lab_data(tmp_path: Path) -> dict[str, Any]:
    return lab_config(LabLayout(), LabPaths(tmp_path))


def test_the_lab_config_loads_and_paths_are_taken_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _lab_data(tmp_path)))
    assert set(config.sites) == {"aws", "hetzner"}
    assert str(config.sites["hetzner"].address) == "127.0.20.1"
    assert config.sites["aws"].database.passfile == tmp_path / "secrets" / "pgpass"
    assert config.dns.zone == "lab.failover.test."
    assert config.dns_providers["bind9"].kind == "rfc2136"
    assert config.dns_providers["route53"].kind == "route53"


def test_every_problem_is_reported_at_once_with_its_field_path(tmp_path: Path) -> None:
    data = _lab_data(tmp_path)
    data["sites"]["aws"]["address"] = "not-an-ip"
    del data["sites"]["hetzner"]["objects"]["bucket"]
    data["sites"]["hetzner"]["app_url"] = "ftp://x"
    data["dns_providers"]["bind9"]["port"] = "fifty-three"
    data["dns"]["zone"] = "no-dot"
    data["surprise"] = 1
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    message = str(info.value)
    assert "has 6 problems" in message
    for where in ("sites.aws.address:", "sites.hetzner.objects.bucket: is required",
                  "sites.hetzner.app_url: must start with http://",
                  "dns_providers.bind9.port:", "dns.zone: must be absolute", "surprise:"):
        assert where in message, (where, message)


def test_cross_field_rules_are_checked_together(tmp_path: Path) -> None:
    data = _lab_data(tmp_path)
    data["sites"]["hetzner"]["address"] = data["sites"]["aws"]["address"]
    data["dns_providers"]["route53"]["zone"] = "other.test."
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg", tmp_path)
    message = str(info.value)
    assert "sites.hetzner.address: 127.0.10.1 is also the address of site 'aws'" in message
    assert "dns_providers.route53.zone: 'other.test.' is not the zone" in message


def test_an_unknown_dns_provider_kind_is_named(tmp_path: Path) -> None:
    data = _lab_data(tmp_path)
    data["dns_providers"]["bind9"]["kind"] = "powerdns"
    with pytest.raises(ConfigError, match=r"dns_providers\.bind9"):
        parse_config(data, "cfg", tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites: [unclosed", r"not valid YAML at line 1"),
        ("- a list", r"expected a mapping"),
        ("{}", r"sites: is required"),
    ],
)
def test_malformed_files_get_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read configuration .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_records_that_could_never_be_published_are_refused_at_load(tmp_path: Path) -> None:
    data = _lab_data(tmp_path)
    data["dns"]["records"] = [{"name": "app.example.com.", "type": "A"}]
    data["sites"]["hetzner"]["compute"] = {"kind": "agent"}
    with pytest.raises(ConfigError) as refused:
        load_config(_write(tmp_path, data))
    message = str(refused.value)
    assert "dns.records.0.name: 'app.example.com.' must be a name relative to the zone" in message
    # The `kind` tag of a tagged section stays out of the path a person reads.
    assert "sites.hetzner.compute.url: is required" in message


def test_a_record_type_that_cannot_carry_the_sites_address_is_refused(tmp_path: Path) -> None:
    data = _lab_data(tmp_path)
    data["dns"]["records"] = [{"name": "www", "type": "AAAA"}]
    with pytest.raises(ConfigError, match=r"dns\.records\.0\.type: AAAA cannot carry the IPv4 "
                       r"address 127\.0\.10\.1 of site 'aws'"):
        load_config(_write(tmp_path, data))


def test_a_dns_provider_named_like_a_kind_keeps_its_name_in_the_error_path(
    tmp_path: Path,
) -> None:
    # pydantic puts the kind's tag after the provider's name; only that part is left out.
    data = _lab_data(tmp_path)
    bind9 = data["dns_providers"].pop("bind9")
    data["dns_providers"]["route53"] = {**bind9, "port": "fifty-three"}  # kind rfc2136
    data["dns_providers"]["rfc2136"] = {**bind9, "timeout": 0}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg", tmp_path)
    message = str(info.value)
    assert "dns_providers.route53.port: Input should be a valid integer" in message, message
    assert "dns_providers.rfc2136.timeout: Input should be greater than 0" in message, message


def test_an_unknown_kind_names_the_provider_even_when_it_is_named_like_a_kind(
    tmp_path: Path,
) -> None:
    data = _lab_data(tmp_path)
    data["dns_providers"]["route53"]["kind"] = "powerdns"
    with pytest.raises(ConfigError, match=r"dns_providers\.route53: Input tag 'powerdns'"):
        parse_config(data, "cfg", tmp_path)


def test_sites_named_like_a_kind_keep_their_names_in_the_error_path(tmp_path: Path) -> None:
    data = _lab_data(tmp_path)
    sites = data["sites"]
    sites["ec2"], sites["agent"] = sites.pop("aws"), sites.pop("hetzner")
    sites["ec2"]["api"]["timeout"] = -1  # the aws site's API is of kind ec2
    sites["agent"]["compute"] = {"kind": "agent"}
    sites["agent"]["api"] = {**sites["agent"]["api"], "endpoint": 5}  # kind hcloud
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg", tmp_path)
    message = str(info.value)
    for where in ("sites.ec2.api.timeout: Input should be greater than 0",
                  "sites.agent.compute.url: is required",
                  "sites.agent.api.endpoint: Input should be a valid string"):
        assert where in message, (where, message)


def test_the_lab_compute_kind_is_gone_and_the_message_names_the_one_there_is(
    tmp_path: Path,
) -> None:
    data = _lab_data(tmp_path)
    data["sites"]["hetzner"]["compute"] = {"kind": "lab", "state_dir": "lab"}
    with pytest.raises(ConfigError, match=r"sites\.hetzner\.compute: Input tag 'lab' .*'agent'"):
        parse_config(data, "cfg", tmp_path)


def test_a_lease_renewed_less_often_than_four_times_per_lease_is_refused(tmp_path: Path) -> None:
    data = _lab_data(tmp_path)
    data["watch"] = {**data["watch"], "lease_seconds": 8, "lease_renew_every": 2.5}
    with pytest.raises(ConfigError, match=r"watch: lease_renew_every \(2\.5s\) must be at most "
                       r"a quarter of lease_seconds \(8s\)"):
        parse_config(data, "cfg", tmp_path)
    data["watch"] = {**data["watch"], "lease_seconds": 8, "lease_renew_every": 2}
    assert parse_config(data, "cfg", tmp_path).watch.lease_renew_every == 2
    # No leases: nothing to renew, any interval is fine.
    data["watch"] = {**data["watch"], "lease_seconds": 0, "lease_renew_every": 5}
    assert parse_config(data, "cfg", tmp_path).watch.lease_seconds == 0
