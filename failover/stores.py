"""Where data lives outside a site's host: object stores and backup repositories.

Shared by the deployment's configuration (``failover.config``) and the
agent's (``failover.agent.config``), and kept free of heavy imports: the
agent loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectStoreConfig(_Strict):
    """A site's S3-compatible bucket."""

    endpoint_url: str | None = None
    bucket: str
    region: str = "us-east-1"
    credentials_file: Path | None = None  # AWS shared-credentials file, 0600
    timeout: float = Field(
        default=20.0, gt=0, le=300,
        description="seconds to wait for an answer to one request (connect: at most 5)",
    )


class RepositoryConfig(_Strict):
    """One pgBackRest repository: a bucket in S3-compatible storage at some provider."""

    provider: str = Field(description="the provider whose storage holds it (aws, hetzner, ...)")
    endpoint: str = Field(description="the S3 endpoint's host name or address (TLS only)")
    port: int = Field(443, ge=1, le=65535)
    bucket: str
    region: str = "us-east-1"
    path: str = Field("/pgbackrest", description="where in the bucket the repository lives")
    uri_style: Literal["host", "path"] = "host"
    verify_tls: bool = Field(True, description="false only for a lab's self-signed endpoint")
    credentials_file: Path = Field(description="AWS shared-credentials file (0600) for it")
