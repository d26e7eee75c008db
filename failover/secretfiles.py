"""Files that hold secrets: written 0600, refused when others can read them.

Secrets (TSIG keys, passwords, tokens, webhook secrets) live in files like
these or in the environment; their contents are never logged.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from failover.exceptions import ConfigError


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Create or replace a file that only its owner can read (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read_private(path: Path, what: str = "secret file") -> str:
    """Read a secret file, refusing one that group or others can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    return text
