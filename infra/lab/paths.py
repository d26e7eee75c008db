"""Where the lab keeps its state: one directory, everything inside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from failover.configpaths import default_state_dir

__all__ = ["LabPaths", "default_state_dir"]


@dataclass(frozen=True)
class LabPaths:
    """The files and folders of one lab."""

    root: Path

    @property
    def state_file(self) -> Path:
        """The layout and the processes of the running lab (JSON)."""
        return self.root / "lab.json"

    @property
    def lock_file(self) -> Path:
        """Held while the lab is being started or stopped."""
        return self.root / ".lock"

    @property
    def secrets(self) -> Path:
        """Per-lab secrets, 0700 with 0600 files."""
        return self.root / "secrets"

    @property
    def logs(self) -> Path:
        """One log per server; kept after ``lab down`` for post-mortems."""
        return self.root / "logs"

    @property
    def dns(self) -> Path:
        """BIND's configuration, zone and journal."""
        return self.root / "dns"

    def site(self, name: str) -> Path:
        """A site's own directory."""
        return self.root / "sites" / name

    def pgdata(self, site: str) -> Path:
        """A site's PostgreSQL data directory."""
        return self.site(site) / "pgdata"

    def log(self, part: str) -> Path:
        """The log file of one part, e.g. ``postgres@aws``."""
        return self.logs / f"{part}.log"
