"""The reference app's processes in the lab, one per site."""

from __future__ import annotations

import os
import sys

import httpx

from failover.waiting import wait_for
from infra.lab.layout import APP_DATABASE, APP_USER, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import aws_credentials_file, pgpass_file

# Credentials in the caller's environment would override the lab's own file.
_HIDDEN_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
               "PGPASSWORD", "PGPASSFILE", "PGHOST", "PGUSER", "PGDATABASE", "PGPORT")


def clean_env() -> dict[str, str]:
    """Our environment without what would override the lab's own files."""
    return {k: v for k, v in os.environ.items() if k not in _HIDDEN_ENV}


def app_settings(layout: LabLayout, paths: LabPaths, site: str) -> dict[str, str]:
    """What a site's app is told: where its database and bucket are (file names, no secret)."""
    return dict(
        FAILOVER_SITE=site,
        FAILOVER_DATABASE_DSN=(
            f"host={layout.address(site)} port={layout.postgres_port} "
            f"dbname={APP_DATABASE} user={APP_USER}"
        ),
        FAILOVER_S3_ENDPOINT=layout.s3_endpoint(site),
        FAILOVER_S3_BUCKET=layout.bucket,
        PGPASSFILE=str(pgpass_file(paths)),
        AWS_SHARED_CREDENTIALS_FILE=str(aws_credentials_file(paths)),
        AWS_DEFAULT_REGION=layout.region,
    )


def argv(layout: LabLayout, site: str) -> list[str]:
    """A site app's command line (uvicorn, one worker, on the site's address)."""
    return [sys.executable, "-m", "infra.refapp",
            "--host", layout.address(site), "--port", str(layout.app_port)]


def readiness(layout: LabLayout, site: str, timeout: float = 2.0) -> dict[str, object]:
    """The app's /readyz answer (raises when it does not answer)."""
    response = httpx.get(f"{layout.app_url(site)}/readyz", timeout=timeout)
    data: dict[str, object] = response.json()
    data["http_status"] = response.status_code
    return data


def wait_ready(layout: LabLayout, site: str, role: str, timeout: float = 30.0) -> None:
    """Wait until the app is ready and sees its database in the expected role."""
    wait_for(
        lambda: readiness(layout, site, timeout=1.0).get("role") == role,
        timeout=timeout, what=f"app@{site} to be ready as {role}",
        retry_on=httpx.TransportError,  # uvicorn not listening yet
    )
