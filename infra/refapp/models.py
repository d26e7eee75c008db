"""Request and response bodies of the HTTP API (pydantic models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from .social import Follow, Media, Post, User

HANDLE_MAX = 32
DISPLAY_NAME_MAX = 64
POST_TEXT_MAX = 500


class UserCreate(BaseModel):
    """Body of ``POST /v1/users``."""

    handle: Annotated[str, Field(min_length=1, max_length=HANDLE_MAX, pattern=r"^[a-z0-9_]+$")]
    display_name: Annotated[str | None, Field(max_length=DISPLAY_NAME_MAX)] = None


class UserOut(BaseModel):
    """A user as returned by the API."""

    id: UUID
    handle: str
    display_name: str | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        """Build the response body for a stored user."""
        return cls(
            id=user.id,
            handle=user.handle,
            display_name=user.display_name,
            created_at=user.created_at,
        )


class FollowCreate(BaseModel):
    """Body of ``POST /v1/users/{id}/follow``."""

    followee_id: UUID


class FollowOut(BaseModel):
    """A follow relation; ``created`` is false when it already existed."""

    follower_id: UUID
    followee_id: UUID
    created_at: datetime
    created: bool

    @classmethod
    def of(cls, follow: Follow, created: bool) -> FollowOut:
        """Build the response body for a stored follow."""
        return cls(
            follower_id=follow.follower_id,
            followee_id=follow.followee_id,
            created_at=follow.created_at,
            created=created,
        )


class MediaOut(BaseModel):
    """Metadata of an uploaded media object."""

    id: UUID
    owner_id: UUID
    key: str
    size: int
    content_type: str
    etag: str
    url: str
    created_at: datetime

    @classmethod
    def of(cls, media: Media) -> MediaOut:
        """Build the response body for a stored media row."""
        return cls(
            id=media.id,
            owner_id=media.owner_id,
            key=media.object_key,
            size=media.size_bytes,
            content_type=media.content_type,
            etag=media.etag,
            url=media_url(media.id),
            created_at=media.created_at,
        )


class PostCreate(BaseModel):
    """Body of ``POST /v1/posts``."""

    author_id: UUID
    text: Annotated[str, Field(min_length=1, max_length=POST_TEXT_MAX)]
    media_id: UUID | None = None


class PostOut(BaseModel):
    """A post; ``media_url`` is the path of its media, or null."""

    id: UUID
    author_id: UUID
    text: str
    media_id: UUID | None
    media_url: str | None
    created_at: datetime

    @classmethod
    def of(cls, post: Post) -> PostOut:
        """Build the response body for a stored post."""
        return cls(
            id=post.id,
            author_id=post.author_id,
            text=post.text,
            media_id=post.media_id,
            media_url=None if post.media_id is None else media_url(post.media_id),
            created_at=post.created_at,
        )


class TimelineOut(BaseModel):
    """A user's home timeline, newest first."""

    user_id: UUID
    posts: list[PostOut]


class HealthOut(BaseModel):
    """Body of ``GET /healthz``."""

    status: str
    site: str


class ReadyOut(BaseModel):
    """Body of ``GET /readyz`` when the database answered."""

    site: str
    role: str
    writable: bool
    database: str
    schema_version: int | None
    lease: str = "off"  # off | held | lapsed (see `lease`)
    reason: str | None = None  # why the lease refuses writes, when it does


def media_url(media_id: UUID) -> str:
    """Return the API path serving a media object's bytes."""
    return f"/v1/media/{media_id}"
