"""The lab's EC2 server: moto's own, loading the instance offerings of its region only."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from infra.lab.moto_server import only_regions

LAB_REGION = "eu-central-1"


def test_other_regions_offerings_load_empty_and_everything_else_as_moto_has_it() -> None:
    asked: list[str] = []

    def load(resource: str) -> Any:
        asked.append(resource)
        return [{"from": resource}]

    trimmed = only_regions(load, {LAB_REGION})
    kept = f"ec2/resources/instance_type_offerings/region/{LAB_REGION}.json"
    other = "ec2/resources/instance_type_offerings/availability-zone/us-west-2.json"
    assert trimmed(kept) == [{"from": kept}]
    assert trimmed(other) == []
    assert trimmed("ec2/resources/instance_types.json") == [
        {"from": "ec2/resources/instance_types.json"}]
    assert asked == [kept, "ec2/resources/instance_types.json"]  # the other was never read


def test_moto_loads_only_the_kept_regions_offerings() -> None:
    """Against moto as installed: fails when moto moves what ``trim_offerings`` reaches."""
    probe = (
        "import json\n"
        "from infra.lab.moto_server import trim_offerings\n"
        f"assert trim_offerings([{LAB_REGION!r}])\n"
        "from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS\n"
        "print(json.dumps({kind: sorted(r for r, offers in regions.items() if offers)\n"
        "                  for kind, regions in INSTANCE_TYPE_OFFERINGS.items()}))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                       text=True, check=True, timeout=120).stdout)
    assert set(loaded) == {"region", "availability-zone", "availability-zone-id"}
    assert all(regions == [LAB_REGION] for regions in loaded.values()), loaded
