"""Typed domain errors and their single rendering as RFC 9457 problem details.

Domain code raises subclasses of :class:`DomainError`; :func:`install_error_handlers` turns them,
and every framework error, into ``application/problem+json``. No stack trace, SQL text or internal
path ever reaches a client: unexpected exceptions become a bare 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://taskhub.dev/problems/"

log = structlog.get_logger("taskhub.errors")


class DomainError(Exception):
    """Base of every expected error; ``status`` is the HTTP status it maps to.

    ``persist`` asks the unit of work to commit what was written before the error was raised
    (used by refresh-token reuse detection, whose family revocation must survive the 401).
    """

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"
    persist: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None


class BadRequest(DomainError):
    """400: the request cannot be parsed."""


class Unauthorized(DomainError):
    """401: missing, invalid, expired or revoked credentials."""

    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="taskhub"')


class Forbidden(DomainError):
    """403: authenticated but not allowed."""

    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(DomainError):
    """404: no such resource (or not yours: no existence leak)."""

    status, slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    """409: the request conflicts with the current state (duplicate email, last admin)."""

    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(DomainError):
    """412: ``If-Match`` does not match the current ETag."""

    status, slug, title = 412, "precondition-failed", "Precondition failed"


class UnprocessableEntity(DomainError):
    """422: the input is well-formed but invalid; ``errors`` names the fields."""

    status, slug, title = 422, "validation-error", "Validation error"


class TooManyRequests(DomainError):
    """429: a rate limit was hit; headers carry ``Retry-After`` and ``RateLimit-*``."""

    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(DomainError):
    """503: a dependency is down and the request cannot be served."""

    status, slug, title = 503, "unavailable", "Service unavailable"


def field_error(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    """One entry of a problem's ``errors`` list: ``{"loc": [...], "msg": ..., "type": ...}``."""
    return {"loc": list(loc), "msg": msg, "type": type_}


def _slug_for(status: int) -> tuple[str, str]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return phrase.lower().replace(" ", "-").replace("'", ""), phrase


def problem_response(
    request_path: str,
    request_id: str | None,
    *,
    status: int,
    title: str | None = None,
    detail: str | None = None,
    slug: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build a problem-details response (RFC 9457) with the request id and optional ``errors``."""
    default_slug, phrase = _slug_for(status)
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or default_slug),
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
        "instance": request_path,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = list(errors)
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def _request_id(request: Request) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else None


def clean_validation_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's error dicts as problem ``errors`` entries: ``loc``, ``msg`` (without Pydantic's
    "Value error, " prefix) and ``type``; nothing else (no input echo, no URLs)."""
    cleaned: list[dict[str, Any]] = []
    for err in raw:
        msg = str(err.get("msg", "invalid value"))
        msg = msg.removeprefix("Value error, ")
        cleaned.append({"loc": list(err.get("loc", [])), "msg": msg, "type": str(err.get("type", ""))})
    return cleaned


FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _malformed_json(request: Request) -> Response:
    return problem_response(
        request.url.path,
        _request_id(request),
        status=400,
        title="Malformed JSON",
        detail="The request body is not valid JSON (UTF-8).",
        slug="malformed-json",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that render every error as problem details."""

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return problem_response(
            request.url.path,
            _request_id(request),
            status=exc.status,
            title=exc.title,
            detail=exc.detail,
            slug=exc.slug,
            errors=exc.errors,
            headers=exc.headers,
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _malformed_json(request)
        cleaned = clean_validation_errors(errors)
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in cleaned)
        return problem_response(
            request.url.path,
            _request_id(request),
            status=422,
            title="Validation error",
            detail=f"Invalid input: {fields}" if fields else "Invalid input",
            slug="validation-error",
            errors=cleaned,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else None
        status = exc.status_code
        if status == 400 and detail == FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body json.loads cannot take (not UTF-8, nested beyond the
            # recursion limit, an integer over 4300 digits): the same problem as any malformed JSON.
            return _malformed_json(request)
        if status == 404 and detail == "Not Found":
            detail = f"No route matches {request.url.path}"
        if status == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path}"
        return problem_response(
            request.url.path,
            _request_id(request),
            status=status,
            detail=detail,
            headers=exc.headers,
        )

    async def pool_exhausted(request: Request, exc: Exception) -> Response:
        # Every pooled database connection stayed busy for the pool timeout: the service is
        # overloaded, not broken. A clean 503 the client may retry, never a 500.
        log.warning("database_pool_exhausted", path=request.url.path)
        busy = ServiceUnavailable(
            "The service is busy (no database connection became free in time); retry shortly.",
            headers={"Retry-After": "1"},
        )
        return await domain_error(request, busy)

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(PoolTimeoutError, pool_exhausted)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # Unexpected exceptions are answered (a bare 500 with the request id) and logged by
    # core.observability.RequestIdMiddleware, the outermost layer that knows the request id.
