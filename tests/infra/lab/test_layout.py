"""The lab's layout: loopback only, every problem named at once."""

from __future__ import annotations

import pytest

from failover.exceptions import ConfigError
from infra.lab.layout import LabLayout


def test_sites_have_their_own_loopback_addresses() -> None:
    layout = LabLayout(subnet="127.77")
    assert [layout.address(s) for s in ("aws", "hetzner", "spare")] == [
        "127.77.10.1", "127.77.20.1", "127.77.30.1",
    ]
    assert layout.app_name == "app.lab.failover.test."


def test_round_trips_through_json_data() -> None:
    layout = LabLayout(subnet="127.5", dns_port=5999, s3_tls_port=6443)
    assert LabLayout.from_dict(layout.to_dict()) == layout


def test_refuses_anything_but_loopback_and_names_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        LabLayout(subnet="10.0", dns_port=0, zone="no-dot")
    message = str(info.value)
    assert "subnet '10.0' must look like 127.N" in message
    assert "dns_port 0" in message
    assert "must be absolute" in message


def test_route53_has_a_port_of_its_own_at_the_aws_site() -> None:
    layout = LabLayout(subnet="127.77")
    assert layout.route53_endpoint == "http://127.77.10.1:5001"
    assert layout.s3_endpoint("aws") == "http://127.77.10.1:5000"
    assert layout.listener("route53@aws") == ("127.77.10.1", 5001)
    listeners = layout.listeners()
    assert len({(address, port) for _, address, port in listeners}) == len(listeners)
    assert [part for part, _, _ in listeners if part.endswith("@aws")] == [
        "agent@aws", "postgres@aws", "app@aws", "moto@aws", "tls@aws", "route53@aws", "ec2@aws",
        "etcd@aws", "etcd@aws",
    ]
    assert [part for part, _, _ in listeners if part.endswith("@hetzner")] == [
        "agent@hetzner", "postgres@hetzner", "app@hetzner", "moto@hetzner", "tls@hetzner",
        "hcloud@hetzner", "etcd@hetzner", "etcd@hetzner",
    ]


def test_every_site_has_an_object_store_with_tls_in_front_and_spare_an_empty_api() -> None:
    layout = LabLayout(subnet="127.77")
    assert [part for part, _, _ in layout.listeners() if part.endswith("@spare")] == [
        "moto@spare", "tls@spare", "hcloud@spare", "etcd@spare", "etcd@spare",
    ]
    assert layout.listener("hcloud@spare") == ("127.77.30.1", 5002)
    assert layout.hcloud_spare_endpoint == "http://127.77.30.1:5002/v1"
    for site, address in (("aws", "127.77.10.1"), ("hetzner", "127.77.20.1"),
                          ("spare", "127.77.30.1")):
        assert layout.listener(f"moto@{site}") == (address, 5000)
        assert layout.listener(f"tls@{site}") == (address, 5443)
        assert layout.s3_tls_endpoint(site) == f"https://{address}:5443"
    assert LabLayout(subnet="127.77", s3_tls_port=6443).s3_tls_endpoint("spare") == (
        "https://127.77.30.1:6443")


def test_refuses_a_tls_port_that_is_no_port_or_clashes_at_a_site() -> None:
    with pytest.raises(ConfigError, match="s3_tls_port 0 is not a TCP/UDP port"):
        LabLayout(s3_tls_port=0)
    with pytest.raises(ConfigError, match="s3_tls_port 5000 is moto_port too"):
        LabLayout(s3_tls_port=5000)


def test_each_site_agent_listens_at_its_site() -> None:
    layout = LabLayout(subnet="127.77")
    assert layout.listener("agent@aws") == ("127.77.10.1", 7070)
    assert layout.listener("agent@hetzner") == ("127.77.20.1", 7070)
    with pytest.raises(ConfigError, match="agent_port 5432 is postgres_port too"):
        LabLayout(agent_port=5432)


def test_refuses_a_route53_port_that_is_no_port_or_clashes_at_a_site() -> None:
    with pytest.raises(ConfigError, match="route53_port 0 is not a TCP/UDP port"):
        LabLayout(route53_port=0)
    with pytest.raises(ConfigError, match="route53_port 5000 is moto_port too"):
        LabLayout(route53_port=5000)


def test_the_provider_apis_and_the_controller_have_their_places() -> None:
    layout = LabLayout(subnet="127.77")
    assert layout.ec2_endpoint == "http://127.77.10.1:5003"
    assert layout.hcloud_endpoint == "http://127.77.20.1:5002/v1"
    assert (layout.watch_address, layout.watch_port) == ("127.77.0.1", 8470)
    assert LabLayout().watch_address == "127.0.0.1"  # the default lab's controller
    assert [layout.vantage_address(v) for v in ("vantage-a", "vantage-b")] == [
        "127.77.40.1", "127.77.41.1",
    ]
    with pytest.raises(ConfigError, match="hcloud_port 5001 is route53_port too"):
        LabLayout(hcloud_port=5001)
    with pytest.raises(ConfigError, match="ec2_port 70000 is not a TCP/UDP port"):
        LabLayout(ec2_port=70000)


def test_a_rebuilt_sites_agent_database_and_app_are_found_where_a_site_has_them() -> None:
    layout = LabLayout(subnet="127.77")
    assert layout.where("agent@spare") == ("127.77.30.1", 7070)  # no listener until a rebuild
    assert layout.where("postgres@spare") == ("127.77.30.1", 5432)
    assert layout.where("app@spare") == ("127.77.30.1", 8080)
    assert layout.where("hcloud@spare") == layout.listener("hcloud@spare")
    for unknown in ("agent@nowhere", "moto@nowhere", "bind8"):
        with pytest.raises(KeyError):
            layout.where(unknown)


def test_every_site_has_an_etcd_member_with_a_port_for_clients_and_one_for_peers() -> None:
    layout = LabLayout(subnet="127.77")
    members = [(part, address, port) for part, address, port in layout.listeners()
               if part.startswith("etcd@")]
    assert members == [(f"etcd@{site}", layout.address(site), port)
                       for site in ("aws", "hetzner", "spare") for port in (2379, 2380)]
    assert layout.listener("etcd@hetzner") == ("127.77.20.1", 2379)  # its clients' port
    assert layout.etcd_endpoint("spare") == "http://127.77.30.1:2379"
    assert layout.etcd_peer_url("aws") == "http://127.77.10.1:2380"
    with pytest.raises(ConfigError, match="etcd_peer_port 2379 is etcd_port too"):
        LabLayout(etcd_peer_port=2379)
