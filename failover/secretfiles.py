"""Files that hold secrets: written 0600, refused when others can read them.

Secrets (TSIG keys, passwords, tokens, webhook secrets) live in files like
these or in the environment; their contents are never logged.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from failover.exceptions import ConfigError


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Create or replace a file that only its owner can read (0600); never through a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link: a secret is never written through "
                              "one; remove it") from None
        raise
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def replace_file(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` whole with a new file of ``mode`` (0600: only its owner reads it).

    A reader sees the old file or the new one, never half of either, and a crash
    leaves the old one: the text goes to a private file beside it, which then
    takes its place. A link at ``path`` is replaced, never written through.
    """
    fd, aside = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # made 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(aside, mode)
        os.replace(aside, path)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise


def read_private(path: Path, what: str = "secret file") -> str:
    """Read a secret file, refusing a symbolic link and one that group or others can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{what} {path} is a symbolic link: secrets are read only from "
                              "the file itself; put the file there") from None
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="utf-8", errors="replace") as file:
        # fstat of what was opened: the path may have been swapped since.
        mode = os.fstat(file.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                f"run: chmod 600 {path}"
            )
        try:
            return file.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def check_trusted_dir(path: Path, what: str) -> None:
    """Refuse a directory that is a symbolic link or that group or others may write to.

    Its files steer the tool (which servers, which keys): someone who can
    replace them, or point the link elsewhere, could steer it too. A directory
    that does not exist yet passes (it will be made private).
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot use {what} {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"{what} {path} is a symbolic link: give its real path "
                          f"({path.resolve()}) if you trust it")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {path} is not a directory")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{what} {path} may be written by others (mode "
                          f"{stat.S_IMODE(info.st_mode):o}): anyone could change what this "
                          f"tool does; run: chmod go-w {path}")
