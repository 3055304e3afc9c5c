"""The OpenAPI document describes every response the service really sends.

FastAPI documents what endpoints return; the rest comes from layers it cannot see, and is added
here once, after FastAPI generates the document (:func:`install_openapi`):

- every error is ``application/problem+json`` (:class:`ProblemDetails`; :class:`ValidationProblem`
  with ``errors`` for 422), never FastAPI's ``HTTPValidationError``;
- operations with a security requirement answer 401 (with ``WWW-Authenticate``);
- every operation under the API prefix may answer 429 (rate limits, ``Retry-After`` and
  ``RateLimit-*``) and 503 (no database connection became free, ``Retry-After``); those with a
  body method may answer 400 (malformed JSON or ``Content-Length``), 408, 413 and 415 (the body
  guard);
- every response carries ``X-Request-ID``; API responses ``Cache-Control``.

Statuses that only a domain knows (404, 409, 412, 304, 403 ...) are declared by its router with
:func:`problem_responses` and :func:`headers`, next to the endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute

from taskhub.core.errors import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/ProblemDetails"
VALIDATION_PROBLEM_REF = "#/components/schemas/ValidationProblem"
_BODY_METHODS = frozenset({"post", "put", "patch", "delete"})


class ProblemDetails(BaseModel):
    """An error (RFC 9457): ``type`` and ``title`` are stable per kind of error, ``detail`` is for people."""

    type: str = Field(description="https://taskhub.dev/problems/<slug>")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str = Field(description="The request path")
    request_id: str | None = Field(description="Also in the X-Request-ID header")


class FieldError(BaseModel):
    """One invalid input: where (``["body", "tags", 3]``), why, and the kind of error."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(ProblemDetails):
    """422: the input is well-formed but invalid; ``errors`` names each field (empty for a rule
    that spans fields, such as a reused idempotency key)."""

    errors: list[FieldError] | None = None


_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {"description": "The request's id (echoed when the client sent a sane one)"},
    "Cache-Control": {"description": "`private, no-cache` on API answers; `no-store` on token answers"},
    "ETag": {"description": 'The task\'s strong validator, `"<version>"`'},
    "Location": {"description": "The URL of the created resource"},
    "X-Cache": {"description": "`HIT` when the page came from the per-user cache", "enum": ["HIT", "MISS"]},
    "Idempotent-Replayed": {"description": "`true` when the answer replays an earlier request", "enum": ["true"]},
    "WWW-Authenticate": {"description": 'Always `Bearer realm="taskhub"`'},
    "Retry-After": {"description": "Seconds to wait before retrying", "type": "integer"},
    "RateLimit-Limit": {"description": "Requests allowed in the window", "type": "integer"},
    "RateLimit-Remaining": {"description": "Requests left in the window", "type": "integer"},
    "RateLimit-Reset": {"description": "Seconds until the window resets", "type": "integer"},
    "Set-Cookie": {"description": "The refresh token (`taskhub_refresh`, HttpOnly, SameSite=Strict)"},
}
_RATE_LIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")

_DESCRIPTIONS = {
    400: "Malformed JSON or Content-Length",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Authenticated, but not allowed",
    404: "No such resource (or not yours)",
    409: "Conflicts with the current state",
    412: "If-Match does not match the current ETag",
    408: "The body did not arrive within TASKHUB_BODY_TIMEOUT (the connection is closed)",
    413: "The body is over TASKHUB_MAX_BODY_BYTES",
    415: "The body is not JSON (or JSON sent to the form endpoint)",
    422: "Invalid input; `errors` names each field",
    429: "A rate limit was hit",
    503: "A dependency is overloaded or down; retry after Retry-After",
}


def headers(*names: str, required: bool = True) -> dict[str, Any]:
    """An OpenAPI ``headers`` object for ``names`` (from the table above), e.g. for ``responses=``."""
    result: dict[str, Any] = {}
    for name in names:
        spec = dict(_HEADERS[name])
        description = spec.pop("description")
        spec.setdefault("type", "string")
        result[name] = {"description": description, "required": required, "schema": spec}
    return result


def problem_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, Any]:
    """``responses=`` entries for problem-details errors with these statuses (a router declares the
    ones its domain raises: 404, 409, 412, ...)."""
    described = {**_DESCRIPTIONS, **(descriptions or {})}
    return {status: _problem(status, described.get(status, "Error")) for status in statuses}


def _problem(status: int, description: str) -> dict[str, Any]:
    ref = VALIDATION_PROBLEM_REF if status == 422 else PROBLEM_REF
    response: dict[str, Any] = {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": ref}}}}
    extra: tuple[str, ...] = ()
    if status == 401:
        extra = ("WWW-Authenticate",)
    elif status == 429:
        extra = ("Retry-After", *_RATE_LIMIT)
    elif status == 503:
        extra = ("Retry-After",)
    if extra:
        response["headers"] = headers(*extra)
    return response


def _add_problem(responses: dict[str, Any], status: int) -> None:
    key = str(status)
    existing = responses.get(key)
    if existing is None or "content" not in existing or PROBLEM_JSON not in existing["content"]:
        described = _problem(status, (existing or {}).get("description") or _DESCRIPTIONS.get(status, "Error"))
        if existing and "headers" in existing:
            described.setdefault("headers", {}).update(existing["headers"])
        responses[key] = described


def complete(document: dict[str, Any], *, api_prefix: str) -> dict[str, Any]:
    """Add what middleware and error handlers send to a FastAPI-generated ``document`` (in place).

    ``api_prefix`` (``/api/v1/``) marks the operations behind the rate limiter, the body guard and
    the database pool.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (ProblemDetails, FieldError, ValidationProblem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        schemas[model.__name__] = schema
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)

    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if "422" in responses:
                _add_problem(responses, 422)
            if operation.get("security"):
                _add_problem(responses, 401)
            if path.startswith(api_prefix):
                if method in _BODY_METHODS:
                    for code in (400, 408, 413, 415):
                        _add_problem(responses, code)
                for code in (429, 503):
                    _add_problem(responses, code)
            for status, response in responses.items():
                response_headers = response.setdefault("headers", {})
                response_headers.update(headers("X-Request-ID"))
                if path.startswith(api_prefix):
                    response_headers.setdefault("Cache-Control", headers("Cache-Control")["Cache-Control"])
                    if status != "429":
                        # Present when rate limits are on (TASKHUB_RATE_LIMIT_ENABLED).
                        for name, spec in headers(*_RATE_LIMIT, required=False).items():
                            response_headers.setdefault(name, spec)
    return document


def install_openapi(app: FastAPI, *, api_prefix: str, routes: Sequence[BaseRoute] | None = None) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) return the completed document, built once,
    of ``routes`` (default: the app's own; a split service passes the whole API's)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=list(routes) if routes is not None else app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = complete(document, api_prefix=api_prefix)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def unique_id(route: Any) -> str:
    """Operation ids are the endpoint functions' names (``get_task``): short, stable, unique."""
    return str(route.name)
