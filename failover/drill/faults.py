"""The drill's fault injector: its seam to whatever runs the sites.

A scenario breaks a site through a ``FaultInjector`` and repairs it through
the same. The lab's (``infra.providers.lab_faults``) signals and kills
processes, cuts loopback addresses off and drives the lab's API servers;
a real deployment's (``infra.providers.cloud_faults``) can only do what a
provider's API does safely (power a server off and on). Each call returns a
line for the drill's timeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from failover.exceptions import FailoverError


class FaultInjector(Protocol):
    """What a drill may do to a site, and how it repairs it."""

    def freeze_site(self, site: str) -> str:
        """Stop every process of the site where it stands (connections hang)."""
        ...

    def thaw_site(self, site: str) -> str:
        """Undo ``freeze_site``."""
        ...

    def kill_site(self, site: str) -> str:
        """End every process of the site at once (the provider cut it off)."""
        ...

    def crash_database(self, site: str) -> str:
        """End the site's database server abruptly; it does not come back by itself."""
        ...

    def freeze_process(self, name: str) -> str:
        """Stop one part (e.g. a DNS provider's server) where it stands."""
        ...

    def thaw_process(self, name: str) -> str:
        """Undo ``freeze_process``."""
        ...

    def kill_process(self, name: str) -> str:
        """End one part abruptly (e.g. an etcd member); ``restore_site`` starts it again."""
        ...

    def process_at(self, address: str, port: int) -> str:
        """The name of the part that serves ``address:port``."""
        ...

    def revoke_api_credentials(self, site: str) -> str:
        """Make the site's provider API refuse the controller."""
        ...

    def restore_api_credentials(self, site: str) -> str:
        """Undo ``revoke_api_credentials``."""
        ...

    def cut_off(self, site: str) -> str:
        """Cut the site off from the controller and its vantage points (clients still reach it)."""
        ...

    def heal(self, site: str) -> str:
        """Undo ``cut_off``."""
        ...

    def controller_group(self) -> int | None:
        """The group the drill's controller must run with for ``cut_off`` to cut it off;
        None when cuts are not possible here (then a scenario that needs one is refused)."""
        ...

    def restore_site(self, site: str, primary: str) -> list[str]:
        """Start again what no longer runs and make the site a standby of ``primary``."""
        ...

    def decommission(self, site: str) -> str:
        """Delete a rebuilt spare's host at its provider, and its disks: it runs nothing again."""
        ...


class NoInjector(FailoverError):
    """The deployment has no fault injector the drill can use."""

    exit_code = 2


def injector_for(state_dir: Path) -> FaultInjector:
    """The fault injector of the deployment kept in ``state_dir``: today, the lab's."""
    if not (state_dir / "lab.json").exists():
        raise NoInjector(
            f"{state_dir} holds no lab (lab.json): drills inject their faults into the lab "
            "(failover lab up)")
    from infra.providers.lab_faults import LabFaults  # the one place the drill meets the lab

    return LabFaults(state_dir)
