"""The HTTP API: application factory, lifespan and routes.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, which
suits the synchronous psycopg pool and boto3 client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import social
from .db import Database, Role
from .errors import (
    AppError,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    install_error_handlers,
)
from .lease import LeaseFile, LeaseGuard
from .models import (
    FollowCreate,
    FollowOut,
    HealthOut,
    MediaOut,
    PostCreate,
    PostOut,
    ReadyOut,
    TimelineOut,
    UserCreate,
    UserOut,
)
from .settings import Settings
from .storage import MediaStore

logger = logging.getLogger(__name__)

SITE_HEADER = "X-Refapp-Site"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Readiness probes should answer quickly even when the database is gone.
READINESS_TIMEOUT = 1.5


@dataclass(frozen=True)
class Services:
    """What the routes need: settings, the site's database, its media store and lease."""

    settings: Settings
    db: Database
    store: MediaStore
    lease: LeaseFile


def get_services(request: Request) -> Services:
    """FastAPI dependency returning the app's `Services`."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

router = APIRouter()


class SiteHeaderMiddleware:
    """Adds the site name to every response so clients see which site answered."""

    def __init__(self, app: ASGIApp, site: str) -> None:
        self.app = app
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, tagging the response start message."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_site(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(SITE_HEADER, self.site)
            await send(message)

        await self.app(scope, receive, send_with_site)


def create_app(
    settings: Settings,
    db: Database | None = None,
    store: MediaStore | None = None,
    lease: LeaseFile | None = None,
) -> FastAPI:
    """Build the app for one site; ``db``, ``store`` and ``lease`` may be injected by tests."""
    services = Services(
        settings=settings,
        db=db or Database(settings.database_dsn, settings.site),
        store=store or MediaStore(settings.s3_endpoint, settings.s3_bucket, settings.site),
        lease=lease or LeaseFile(settings.lease_file),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.db.open()
        # Migrates a primary now; if the database is down or a standby the app starts
        # anyway and migrates once it finds a writable primary (see Database).
        await run_in_threadpool(services.db.prepare, READINESS_TIMEOUT)
        try:
            yield
        finally:
            await run_in_threadpool(services.db.close)

    app = FastAPI(
        title="refapp",
        summary=f"Reference social app of the failover lab (site {settings.site})",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    # Added first, so it runs inside the site header's: a refused write names its site too.
    app.add_middleware(LeaseGuard, lease=services.lease, site=settings.site)
    app.add_middleware(SiteHeaderMiddleware, site=settings.site)
    app.include_router(router)
    return app


@router.get("/healthz")
def healthz(svc: ServicesDep) -> HealthOut:
    """Report that the process is alive (no database access)."""
    return HealthOut(status="ok", site=svc.settings.site)


@router.get("/readyz", response_model=ReadyOut)
def readyz(svc: ServicesDep) -> Any:
    """Report the database role and the lease; 200 when the database answered, else 503."""
    # A standby, and a primary whose lease lapsed, serve reads: both are ready, not writable.
    try:
        status = svc.db.status(READINESS_TIMEOUT)
    except AppError as exc:
        lease = svc.lease.check()
        return JSONResponse(
            {
                "error": exc.message,
                "site": svc.settings.site,
                "role": Role.UNKNOWN.value,
                "writable": False,
                "database": exc.message,
                "schema_version": None,
                "lease": lease.state,
                "reason": lease.reason,
            },
            status_code=503,
            headers=exc.headers,
        )
    lease = svc.lease.check()  # after the database's answer, which may take a while
    return ReadyOut(
        site=svc.settings.site,
        role=status.role.value,
        writable=status.writable and lease.writable,
        database="ok",
        schema_version=status.schema_version,
        lease=lease.state,
        reason=lease.reason,
    )


@router.post("/v1/users", status_code=201)
def create_user(body: UserCreate, svc: ServicesDep) -> UserOut:
    """Create a user with a unique handle."""
    with svc.db.writing() as conn:
        user = social.create_user(conn, body.handle, body.display_name)
    if user is None:
        raise Conflict(f"handle '{body.handle}' is already taken", handle=body.handle)
    return UserOut.of(user)


@router.get("/v1/users/{user_id}")
def get_user(user_id: UUID, svc: ServicesDep) -> UserOut:
    """Return one user."""
    with svc.db.reading() as conn:
        user = social.get_user(conn, user_id)
    if user is None:
        raise _unknown_user(user_id)
    return UserOut.of(user)


@router.post("/v1/users/{user_id}/follow", status_code=201, response_model=FollowOut)
def follow(user_id: UUID, body: FollowCreate, svc: ServicesDep) -> Any:
    """Make ``user_id`` follow ``followee_id``; 201 when new, 200 when already following."""
    if user_id == body.followee_id:
        raise InvalidRequest("a user cannot follow themselves", user_id=str(user_id))
    with svc.db.writing() as conn:
        if not social.user_exists(conn, user_id):
            raise _unknown_user(user_id, role="follower")
        if not social.user_exists(conn, body.followee_id):
            raise _unknown_user(body.followee_id, role="followee")
        relation, created = social.follow(conn, user_id, body.followee_id)
    out = FollowOut.of(relation, created)
    if created:
        return out
    return JSONResponse(out.model_dump(mode="json"), status_code=200)


@router.post("/v1/media", status_code=201)
def upload_media(
    file: Annotated[UploadFile, File(description="the media bytes")],
    owner_id: Annotated[UUID, Form(description="id of the uploading user")],
    svc: ServicesDep,
) -> MediaOut:
    """Store an upload in the site's bucket under ``media/<id>`` and record it."""
    limit = svc.settings.media_max_bytes
    # Read one byte past the limit: enough to know it is too large without reading more.
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(
            f"the file is larger than the limit of {limit} bytes", max_bytes=limit
        )
    if not data:
        raise InvalidRequest("the uploaded file is empty", field="file")
    content_type = file.content_type or DEFAULT_CONTENT_TYPE

    # Check writability and the owner first: a standby's bucket must not get objects
    # that no database row will ever point to.
    with svc.db.writing() as conn:
        if not social.user_exists(conn, owner_id):
            raise _unknown_user(owner_id, role="owner")

    media_id = uuid4()
    key = f"media/{media_id}"
    etag = svc.store.put(key, data, content_type)
    try:
        with svc.db.writing() as conn:
            media = social.insert_media(
                conn, media_id, owner_id, key, len(data), content_type, etag
            )
    except BaseException:
        svc.store.delete_quietly(key)
        raise
    return MediaOut.of(media)


@router.get(
    "/v1/media/{media_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_media(media_id: UUID, svc: ServicesDep) -> Response:
    """Return the bytes of a media object with its content type."""
    with svc.db.reading() as conn:
        media = social.get_media(conn, media_id)
    if media is None:
        raise NotFound(f"unknown media: {media_id}", media_id=str(media_id))
    stored = svc.store.get(media.object_key)
    if stored is None:
        # The row replicated but the object did not (yet): say so rather than 500.
        raise NotFound(
            f"media {media_id} is recorded but object '{media.object_key}' is missing "
            f"from bucket '{svc.store.bucket}' of site '{svc.settings.site}'",
            media_id=str(media_id),
            key=media.object_key,
            site=svc.settings.site,
        )
    # The content type goes in as a plain header: Starlette's media_type would append
    # "; charset=utf-8" to text types, and the type should come back exactly as uploaded.
    return Response(
        content=stored.data,
        headers={"Content-Type": media.content_type, "ETag": f'"{stored.etag or media.etag}"'},
    )


@router.post("/v1/posts", status_code=201)
def create_post(body: PostCreate, svc: ServicesDep) -> PostOut:
    """Publish a post, optionally with previously uploaded media."""
    with svc.db.writing() as conn:
        if not social.user_exists(conn, body.author_id):
            raise _unknown_user(body.author_id, role="author")
        if body.media_id is not None and social.get_media(conn, body.media_id) is None:
            raise NotFound(f"unknown media: {body.media_id}", media_id=str(body.media_id))
        post = social.create_post(conn, body.author_id, body.text, body.media_id)
    return PostOut.of(post)


@router.get("/v1/posts/{post_id}")
def get_post(post_id: UUID, svc: ServicesDep) -> PostOut:
    """Return one post."""
    with svc.db.reading() as conn:
        post = social.get_post(conn, post_id)
    if post is None:
        raise NotFound(f"unknown post: {post_id}", post_id=str(post_id))
    return PostOut.of(post)


@router.get("/v1/users/{user_id}/timeline")
def timeline(
    user_id: UUID,
    svc: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> TimelineOut:
    """Return the home timeline: posts by the user and those they follow, newest first."""
    with svc.db.reading() as conn, conn.transaction():
        # One transaction: a consistent snapshot for the existence check and the posts.
        if not social.user_exists(conn, user_id):
            raise _unknown_user(user_id)
        posts = social.home_timeline(conn, user_id, limit)
    return TimelineOut(user_id=user_id, posts=[PostOut.of(post) for post in posts])


def _unknown_user(user_id: UUID, role: str | None = None) -> NotFound:
    """Return the 404 for a missing user; ``role`` says which user of the request it was."""
    if role is None:
        return NotFound(f"unknown user: no user with id {user_id}", user_id=str(user_id))
    return NotFound(f"unknown {role}: no user with id {user_id}", user_id=str(user_id), which=role)
