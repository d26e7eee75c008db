"""SQLite files only their owner reads (the run journal, the controller's store)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Literal

from failover.exceptions import ConfigError


@contextmanager
def private_db(path: Path, schema: str, what: str, *,
               synchronous: Literal["FULL", "NORMAL"] = "NORMAL") -> Iterator[sqlite3.Connection]:
    """A short connection to a 0600 SQLite file in WAL mode, its schema in place.

    A file that cannot be opened is a ConfigError naming ``what`` it is.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # They name servers, files and decisions: only their owner reads them.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open {what} {path}: {exc}") from None
    with closing(conn):
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.executescript(schema)
        yield conn
