"""Application errors and the handlers that render every error as ``{"error": ...}`` JSON."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

# How long clients should wait before retrying after a 503: failovers take seconds.
RETRY_AFTER_SECONDS = 1


class AppError(Exception):
    """An error with an HTTP status, a one-sentence message and extra JSON fields."""

    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error response."""
        return {"error": self.message, **self.extra}


class NotFound(AppError):
    """A resource named in the request does not exist."""

    status_code = 404


class Conflict(AppError):
    """The request conflicts with existing data (e.g. a taken handle)."""

    status_code = 409


class PayloadTooLarge(AppError):
    """An upload exceeds the configured size limit."""

    status_code = 413


class InvalidRequest(AppError):
    """The request is well-formed but semantically invalid."""

    status_code = 422


class ServiceUnavailable(AppError):
    """A dependency (database, object storage) cannot serve the request right now."""

    status_code = 503

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, **extra)


class DatabaseUnavailable(ServiceUnavailable):
    """The site's database could not be reached or dropped the connection."""

    def __init__(self, site: str, cause: str) -> None:
        super().__init__(f"database unavailable: {cause}", site=site)
        self.cause = cause


class ReadOnlyDatabase(ServiceUnavailable):
    """A write reached a database that does not accept writes (a standby)."""

    def __init__(self, site: str, role: str) -> None:
        if role == "standby":
            message = (
                f"read-only: the database of site '{site}' is a standby; send writes to the primary"
            )
        else:
            # A primary can refuse writes too, e.g. when fenced with
            # default_transaction_read_only during a planned switchover.
            message = (
                f"read-only: the database of site '{site}' refuses writes "
                f"(role {role}, read-only transactions); send writes to the primary"
            )
        super().__init__(message, site=site, role=role)


class SchemaNotReady(ServiceUnavailable):
    """The database answers but the app's tables are not there (yet)."""

    def __init__(self, site: str, cause: str) -> None:
        super().__init__(f"database schema is not ready: {cause}", site=site)


class LeaseLapsed(ServiceUnavailable):
    """The site's lease lapsed: it may no longer be the primary, so writes are refused."""

    CODE = "fenced"

    def __init__(self, site: str, reason: str) -> None:
        super().__init__(reason, site=site, code=self.CODE)


class StorageUnavailable(ServiceUnavailable):
    """The site's object storage could not serve the request."""

    def __init__(self, site: str, cause: str) -> None:
        super().__init__(f"object storage unavailable: {cause}", site=site)


def format_validation_errors(errors: Sequence[Any]) -> dict[str, Any]:
    """Turn FastAPI/pydantic validation errors into one sentence plus per-field details."""
    fields: list[dict[str, str]] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        kind = str(error.get("type", "value_error"))
        message = str(error.get("msg", "invalid value"))
        if kind == "json_invalid" and len(loc) == 2:
            # FastAPI reports unparsable JSON at ("body", <character offset>).
            detail = (error.get("ctx") or {}).get("error")
            message = f"not valid JSON at character {loc[1]}"
            if detail:
                message = f"{message} ({detail})"
            loc = loc[:1]
        location = ".".join(str(part) for part in loc) or "request"
        fields.append({"field": location, "message": message, "type": kind})
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
    return {"error": f"invalid request: {summary or 'invalid input'}", "fields": fields}


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so no error leaves the app in FastAPI's default shapes."""

    async def app_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        if exc.status_code >= 500:
            logger.info("%s", exc.message)
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(format_validation_errors(exc.errors()), status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this handler so the server logs the traceback;
        # this line ties it to the request.
        logger.error(
            "internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__
        )
        return JSONResponse({"error": "internal error"}, status_code=500)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
