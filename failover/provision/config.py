"""How a provider's API makes a site's host (the ``provision`` section of a spare)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HcloudProvisionConfig(_Strict):
    """Make a site's host at Hetzner Cloud: primary IP, firewall, network, server."""

    kind: Literal["hcloud"]
    endpoint: str = Field("https://api.hetzner.cloud/v1", description="the API's base URL")
    token_file: Path = Field(description="a read-write API token of the project (0600)")
    server_type: str = "cx22"
    image: str = "debian-12"
    location: str = "fsn1"
    network_ip_range: str = "10.42.0.0/16"
    timeout: float = Field(30.0, gt=0, le=300, description="seconds for one request")
    admin_sources: list[str] = Field(
        default_factory=list, description="addresses or CIDRs the controller and operators "
        "reach the agent from (with the other sites, the only ones let in to it and PostgreSQL)")


class Ec2ProvisionConfig(_Strict):
    """Make a site's host at AWS EC2: security group, instance, Elastic IP."""

    kind: Literal["ec2"]
    endpoint_url: str | None = None
    region: str = "us-east-1"
    credentials_file: Path | None = None
    image_id: str = Field(description="the AMI (Debian 12) the instance boots")
    instance_type: str = "t3.small"
    subnet_id: str | None = None
    timeout: float = Field(30.0, gt=0, le=300)
    admin_sources: list[str] = Field(
        default_factory=list, description="addresses or CIDRs the controller and operators "
        "reach the agent from (with the other sites, the only ones let in to it and PostgreSQL)")


ProvisionConfig = Annotated[HcloudProvisionConfig | Ec2ProvisionConfig,
                            Field(discriminator="kind")]
