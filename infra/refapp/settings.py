"""Settings of the reference app, read once at start-up from ``FAILOVER_*`` variables.

The failover lab sets these variables for each site's instance. Passwords are never part
of the settings: libpq reads them from the file named by ``PGPASSFILE``, and boto3 reads
AWS credentials from its own standard environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

SITE_VAR = "FAILOVER_SITE"
DSN_VAR = "FAILOVER_DATABASE_DSN"
S3_ENDPOINT_VAR = "FAILOVER_S3_ENDPOINT"
S3_BUCKET_VAR = "FAILOVER_S3_BUCKET"
MEDIA_MAX_BYTES_VAR = "FAILOVER_MEDIA_MAX_BYTES"
LEASE_FILE_VAR = "FAILOVER_LEASE_FILE"  # set by the site's agent; see `lease`

DEFAULT_MEDIA_MAX_BYTES = 1024 * 1024

_SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# S3 bucket naming rules, minus the rarely relevant IP-address and prefix exclusions.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class SettingsError(ValueError):
    """A required setting is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one site's instance of the app."""

    site: str
    database_dsn: str
    s3_endpoint: str
    s3_bucket: str
    media_max_bytes: int = DEFAULT_MEDIA_MAX_BYTES
    lease_file: Path | None = None  # None: no agent holds a lease for this site

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise `SettingsError` naming the first bad one."""
        env = os.environ if environ is None else environ
        return cls(
            site=_parse_site(_required(env, SITE_VAR)),
            database_dsn=_parse_dsn(_required(env, DSN_VAR)),
            s3_endpoint=_parse_endpoint(_required(env, S3_ENDPOINT_VAR)),
            s3_bucket=_parse_bucket(_required(env, S3_BUCKET_VAR)),
            media_max_bytes=_parse_max_bytes(env.get(MEDIA_MAX_BYTES_VAR)),
            lease_file=_parse_lease_file(env.get(LEASE_FILE_VAR)),
        )


def describe_dsn(dsn: str) -> str:
    """Return a loggable summary of a conninfo string (host, port, dbname, user only)."""
    params = conninfo_to_dict(dsn)
    keys = ("host", "hostaddr", "port", "dbname", "user")
    return " ".join(f"{key}={params[key]}" for key in keys if params.get(key) is not None)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(name, "is required but not set")
    return value


def _parse_site(value: str) -> str:
    if not _SITE_RE.fullmatch(value):
        raise SettingsError(
            SITE_VAR,
            f"is not a valid site name (letters, digits, '_', '.', '-'; at most 63): {value!r}",
        )
    return value


def _parse_dsn(value: str) -> str:
    try:
        params = conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        # psycopg's message quotes the parse problem, never a password: the parse failed.
        problem = " ".join(str(exc).split())
        raise SettingsError(DSN_VAR, f"is not a valid libpq conninfo string: {problem}") from None
    if params.get("password"):
        # Passwords belong in the 0600 file named by PGPASSFILE; a password in the DSN
        # would end up in process listings, settings dumps and error reports.
        raise SettingsError(DSN_VAR, "must not contain a password; put it in PGPASSFILE")
    return value


def _parse_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            S3_ENDPOINT_VAR, f"is not an http(s) URL such as http://127.0.0.1:5000: {value!r}"
        )
    try:
        _ = parts.port
    except ValueError:
        raise SettingsError(S3_ENDPOINT_VAR, f"has an invalid port: {value!r}") from None
    return value.rstrip("/")


def _parse_bucket(value: str) -> str:
    if not _BUCKET_RE.fullmatch(value):
        raise SettingsError(S3_BUCKET_VAR, f"is not a valid S3 bucket name: {value!r}")
    return value


def _parse_max_bytes(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_MEDIA_MAX_BYTES
    try:
        parsed = int(value.strip())
    except ValueError:
        raise SettingsError(
            MEDIA_MAX_BYTES_VAR, f"is not a whole number of bytes: {value!r}"
        ) from None
    if parsed <= 0:
        raise SettingsError(MEDIA_MAX_BYTES_VAR, f"must be positive, got {parsed}")
    return parsed


def _parse_lease_file(value: str | None) -> Path | None:
    if value is None or not value.strip():
        return None
    path = Path(value.strip())
    if not path.is_absolute():
        # The app's working directory is not the agent's: a relative path would name
        # another file, and a lease nobody reads fences nothing.
        raise SettingsError(LEASE_FILE_VAR, f"must be an absolute path: {value!r}")
    return path
