"""AWS access keys, read from a shared-credentials file: the one reader of such files."""

from __future__ import annotations

import configparser
from pathlib import Path

from failover.exceptions import ConfigError
from failover.secretfiles import read_private


def load_credentials(path: Path) -> dict[str, str]:
    """Access keys from an AWS shared-credentials file (``[default]`` or its only profile)."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(read_private(path, "AWS credentials file"), source=str(path))
    except configparser.Error as exc:
        raise ConfigError(f"AWS credentials file {path} is malformed: {exc}") from exc
    sections = parser.sections()
    section = "default" if "default" in sections else sections[0] if len(sections) == 1 else None
    if section is None or not parser.has_option(section, "aws_access_key_id") \
            or not parser.has_option(section, "aws_secret_access_key"):
        raise ConfigError(
            f"AWS credentials file {path} needs a [default] profile with "
            "aws_access_key_id and aws_secret_access_key"
        )
    creds = {
        "aws_access_key_id": parser.get(section, "aws_access_key_id"),
        "aws_secret_access_key": parser.get(section, "aws_secret_access_key"),
    }
    if parser.has_option(section, "aws_session_token"):
        creds["aws_session_token"] = parser.get(section, "aws_session_token")
    return creds
