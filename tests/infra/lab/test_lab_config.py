"""The lab writes the configuration the engine reads; it leads to the real servers."""

from __future__ import annotations

import pytest

from failover.config import CONFIG_FILE_NAME, load_config
from failover.dns.registry import build_providers
from tests.conftest import RunningLab

pytestmark = pytest.mark.lab


def test_the_lab_config_names_files_not_secrets(lab: RunningLab) -> None:
    text = (lab.lab.paths.root / CONFIG_FILE_NAME).read_text()
    for secret in (lab.secrets.postgres_password, lab.secrets.tsig.secret,
                   lab.secrets.aws_secret_access_key):
        assert secret not in text


def test_providers_built_from_the_lab_config_read_the_app_record(lab: RunningLab) -> None:
    config = load_config(lab.lab.paths.root / CONFIG_FILE_NAME)
    providers = build_providers(config.dns_providers)
    assert [p.name for p in providers] == ["bind9", "route53"]
    key = (lab.layout.app_name, "A")
    for provider in providers:
        record = provider.records([key])[key]
        assert record.values == (lab.layout.address("aws"),), provider.name
        assert record.ttl == lab.layout.ttl
