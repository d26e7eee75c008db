"""Pulumi project folders for the tests: a ``Pulumi.yaml`` and a stack file per stack."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

# The checked-in stacks and the sites they deploy (each one's failover:site).
SITES = {"aws-primary": "aws", "hetzner-standby": "hetzner", "spare": "spare"}


def pulumi_project(root: Path, sites: Mapping[str, str | None] = SITES) -> Path:
    """A project folder with one ``Pulumi.<stack>.yaml`` per stack, each naming its site
    (None: a stack file that names none)."""
    root.mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: failover\nruntime: python\n")
    for stack, site in sites.items():
        config = {"failover:site": site} if site is not None else {}
        (root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return root
