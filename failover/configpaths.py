"""Where configuration lives: the default state dir, and relative file paths in a config file
made absolute against the file's folder.

Standard library only: the lab's small servers find their state dir here
without importing the whole configuration (every provider's client).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PATH_KEYS = ("file", "state_dir", "journal")  # *_file, e.g. token_file, password_file
DEFAULT_STATE_DIR = Path(".failover") / "lab"


def default_state_dir() -> Path:
    """$FAILOVER_STATE_DIR, or .failover/lab under the working directory."""
    return Path(os.environ.get("FAILOVER_STATE_DIR") or DEFAULT_STATE_DIR).absolute()


def resolve_paths(data: Any, base: Path) -> Any:
    """Make relative file paths absolute against the config file's folder."""
    if isinstance(data, dict):
        return {
            k: (str(base / v) if k.endswith(PATH_KEYS) and isinstance(v, str)
                and not Path(v).is_absolute() else resolve_paths(v, base))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [resolve_paths(v, base) for v in data]
    return data
