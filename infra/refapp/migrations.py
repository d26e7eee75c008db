"""Ordered, idempotent schema migrations, recorded in ``schema_migrations``.

Only a primary runs them; a standby receives the resulting schema through streaming
replication. Each migration runs in its own transaction under a transaction-level
advisory lock, so concurrent instances (or threads) pointed at one primary apply every
migration exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

# Arbitrary but fixed: the ASCII bytes of "refapp", so other lock users can recognise it.
MIGRATION_LOCK_KEY = 0x726566617070


@dataclass(frozen=True)
class Migration:
    """One schema change: a version number, a description and its SQL statements."""

    version: int
    description: str
    statements: tuple[LiteralString, ...]


# Ids are UUIDs, never serials: after a failover the promoted standby could hand out a
# sequence value that the old primary had already acknowledged (sequences are not
# replicated transactionally), and the failover drill proves writes survived by their ids.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="users, follows, media and posts",
        statements=(
            """
            CREATE TABLE IF NOT EXISTS users (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                handle text NOT NULL UNIQUE CHECK (handle ~ '^[a-z0-9_]{1,32}$'),
                display_name text,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS follows (
                follower_id uuid NOT NULL REFERENCES users (id),
                followee_id uuid NOT NULL REFERENCES users (id),
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (follower_id, followee_id),
                CHECK (follower_id <> followee_id)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS media (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                owner_id uuid NOT NULL REFERENCES users (id),
                object_key text NOT NULL UNIQUE,
                size_bytes bigint NOT NULL CHECK (size_bytes > 0),
                content_type text NOT NULL,
                etag text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS posts (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                author_id uuid NOT NULL REFERENCES users (id),
                text text NOT NULL CHECK (char_length(text) BETWEEN 1 AND 500),
                media_id uuid REFERENCES media (id),
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            # The home timeline reads the newest posts of a handful of authors.
            """
            CREATE INDEX IF NOT EXISTS posts_author_created_idx
                ON posts (author_id, created_at DESC)
            """,
            # "Who follows X" lookups; the primary key already serves "whom X follows".
            """
            CREATE INDEX IF NOT EXISTS follows_followee_idx ON follows (followee_id)
            """,
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_CREATE_LEDGER: LiteralString = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version int PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""


def current_version(conn: psycopg.Connection[Any]) -> int | None:
    """Return the highest applied migration version, or None when none is recorded."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply pending migrations in order, one transaction each; return the versions applied.

    ``conn`` must be in autocommit mode with no transaction open, so that each
    ``conn.transaction()`` below is a real transaction rather than a savepoint.
    """
    applied: list[int] = []
    while True:
        with conn.transaction():
            # Serialises with other migrators until this transaction ends; the ledger is
            # re-read under the lock so a version applied meanwhile is not applied twice.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(_CREATE_LEDGER)
            done = {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}
            pending = [m for m in MIGRATIONS if m.version not in done]
            if not pending:
                return applied
            migration = pending[0]
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
            )
        applied.append(migration.version)
