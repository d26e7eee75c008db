"""The social domain in SQL: users, follows, media rows, posts and timelines.

Functions take an open connection; transactions and role checks are the caller's
(`Database.writing` / `Database.reading`). Ids are generated here, in the app, so a
write's id is known before it is stored and is what the response returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class User:
    """A stored user."""

    id: UUID
    handle: str
    display_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class Follow:
    """A stored follow relation."""

    follower_id: UUID
    followee_id: UUID
    created_at: datetime


@dataclass(frozen=True)
class Media:
    """A stored media row; the bytes live in the bucket under ``object_key``."""

    id: UUID
    owner_id: UUID
    object_key: str
    size_bytes: int
    content_type: str
    etag: str
    created_at: datetime


@dataclass(frozen=True)
class Post:
    """A stored post."""

    id: UUID
    author_id: UUID
    text: str
    media_id: UUID | None
    created_at: datetime


Conn = psycopg.Connection[Any]


def create_user(conn: Conn, handle: str, display_name: str | None) -> User | None:
    """Insert a user; return None if the handle is taken."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        cur.execute(
            """
            INSERT INTO users (id, handle, display_name) VALUES (%s, %s, %s)
            ON CONFLICT (handle) DO NOTHING
            RETURNING id, handle, display_name, created_at
            """,
            (uuid4(), handle, display_name),
        )
        return cur.fetchone()


def get_user(conn: Conn, user_id: UUID) -> User | None:
    """Return the user with ``user_id``, if any."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        cur.execute(
            "SELECT id, handle, display_name, created_at FROM users WHERE id = %s", (user_id,)
        )
        return cur.fetchone()


def user_exists(conn: Conn, user_id: UUID) -> bool:
    """Tell whether a user with ``user_id`` exists."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM users WHERE id = %s)", (user_id,)).fetchone()
    return bool(row and row[0])


def follow(conn: Conn, follower_id: UUID, followee_id: UUID) -> tuple[Follow, bool]:
    """Record that follower follows followee; return the relation and whether it is new."""
    with conn.cursor(row_factory=class_row(Follow)) as cur:
        cur.execute(
            """
            INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)
            ON CONFLICT (follower_id, followee_id) DO NOTHING
            RETURNING follower_id, followee_id, created_at
            """,
            (follower_id, followee_id),
        )
        created = cur.fetchone()
        if created is not None:
            return created, True
        cur.execute(
            """
            SELECT follower_id, followee_id, created_at FROM follows
            WHERE follower_id = %s AND followee_id = %s
            """,
            (follower_id, followee_id),
        )
        existing = cur.fetchone()
    assert existing is not None, "conflicting follow row vanished (follows are never deleted)"
    return existing, False


def insert_media(
    conn: Conn,
    media_id: UUID,
    owner_id: UUID,
    object_key: str,
    size_bytes: int,
    content_type: str,
    etag: str,
) -> Media:
    """Record an uploaded object."""
    with conn.cursor(row_factory=class_row(Media)) as cur:
        cur.execute(
            """
            INSERT INTO media (id, owner_id, object_key, size_bytes, content_type, etag)
            VALUES (%s, %s, %s, %s, %s, %s)
            RETURNING id, owner_id, object_key, size_bytes, content_type, etag, created_at
            """,
            (media_id, owner_id, object_key, size_bytes, content_type, etag),
        )
        media = cur.fetchone()
    assert media is not None
    return media


def get_media(conn: Conn, media_id: UUID) -> Media | None:
    """Return the media row with ``media_id``, if any."""
    with conn.cursor(row_factory=class_row(Media)) as cur:
        cur.execute(
            """
            SELECT id, owner_id, object_key, size_bytes, content_type, etag, created_at
            FROM media WHERE id = %s
            """,
            (media_id,),
        )
        return cur.fetchone()


def create_post(conn: Conn, author_id: UUID, text: str, media_id: UUID | None) -> Post:
    """Insert a post by ``author_id``."""
    with conn.cursor(row_factory=class_row(Post)) as cur:
        cur.execute(
            """
            INSERT INTO posts (id, author_id, text, media_id) VALUES (%s, %s, %s, %s)
            RETURNING id, author_id, text, media_id, created_at
            """,
            (uuid4(), author_id, text, media_id),
        )
        post = cur.fetchone()
    assert post is not None
    return post


def get_post(conn: Conn, post_id: UUID) -> Post | None:
    """Return the post with ``post_id``, if any."""
    with conn.cursor(row_factory=class_row(Post)) as cur:
        cur.execute(
            "SELECT id, author_id, text, media_id, created_at FROM posts WHERE id = %s",
            (post_id,),
        )
        return cur.fetchone()


def home_timeline(conn: Conn, user_id: UUID, limit: int) -> list[Post]:
    """Return the newest posts by ``user_id`` and the users they follow."""
    with conn.cursor(row_factory=class_row(Post)) as cur:
        # A UNION of per-author index scans would scale further; IN is plenty here.
        cur.execute(
            """
            SELECT id, author_id, text, media_id, created_at FROM posts
            WHERE author_id = %(user)s
               OR author_id IN (SELECT followee_id FROM follows WHERE follower_id = %(user)s)
            ORDER BY created_at DESC, id DESC
            LIMIT %(limit)s
            """,
            {"user": user_id, "limit": limit},
        )
        return cur.fetchall()
