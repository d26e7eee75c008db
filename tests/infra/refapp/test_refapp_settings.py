"""Settings parsing: every problem names its variable in one line."""

from __future__ import annotations

import pytest

from infra.refapp.settings import (
    DEFAULT_MEDIA_MAX_BYTES,
    Settings,
    SettingsError,
    describe_dsn,
)

VALID = {
    "FAILOVER_SITE": "aws",
    "FAILOVER_DATABASE_DSN": "host=127.0.10.1 port=5432 dbname=social user=app",
    "FAILOVER_S3_ENDPOINT": "http://127.0.10.1:5000/",
    "FAILOVER_S3_BUCKET": "social-media",
}


def test_valid_settings_with_default_media_limit() -> None:
    settings = Settings.from_env(VALID)
    assert settings.site == "aws"
    assert settings.database_dsn == VALID["FAILOVER_DATABASE_DSN"]
    assert settings.s3_endpoint == "http://127.0.10.1:5000"
    assert settings.s3_bucket == "social-media"
    assert settings.media_max_bytes == DEFAULT_MEDIA_MAX_BYTES == 1048576


def test_media_limit_override() -> None:
    settings = Settings.from_env({**VALID, "FAILOVER_MEDIA_MAX_BYTES": " 2048 "})
    assert settings.media_max_bytes == 2048


@pytest.mark.parametrize(
    "name",
    ["FAILOVER_SITE", "FAILOVER_DATABASE_DSN", "FAILOVER_S3_ENDPOINT", "FAILOVER_S3_BUCKET"],
)
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_required_variable_is_named(name: str, value: str | None) -> None:
    env = dict(VALID)
    if value is None:
        del env[name]
    else:
        env[name] = value
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert info.value.variable == name
    assert str(info.value) == f"{name} is required but not set"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("FAILOVER_SITE", "two words", "not a valid site name"),
        ("FAILOVER_DATABASE_DSN", "host=x port", "not a valid libpq conninfo string"),
        ("FAILOVER_DATABASE_DSN", "host=x password=secret", "must not contain a password"),
        ("FAILOVER_DATABASE_DSN", "postgresql://app:secret@x/social", "must not contain"),
        ("FAILOVER_S3_ENDPOINT", "127.0.10.1:5000", "not an http(s) URL"),
        ("FAILOVER_S3_ENDPOINT", "ftp://127.0.10.1", "not an http(s) URL"),
        ("FAILOVER_S3_ENDPOINT", "http://127.0.10.1:99999", "invalid port"),
        ("FAILOVER_S3_BUCKET", "Bad_Bucket", "not a valid S3 bucket name"),
        ("FAILOVER_MEDIA_MAX_BYTES", "1MB", "not a whole number of bytes"),
        ("FAILOVER_MEDIA_MAX_BYTES", "0", "must be positive"),
        ("FAILOVER_MEDIA_MAX_BYTES", "-5", "must be positive"),
    ],
)
def test_invalid_value_is_named(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**VALID, name: value})
    message = str(info.value)
    assert info.value.variable == name
    assert message.startswith(f"{name} ")
    assert fragment in message
    assert "\n" not in message
    assert "secret" not in message


def test_describe_dsn_keeps_only_safe_fields() -> None:
    described = describe_dsn("host=db port=5432 dbname=social user=app sslmode=require")
    assert described == "host=db port=5432 dbname=social user=app"
