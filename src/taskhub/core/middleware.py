"""ASGI middleware: the request body guard (size 413, JSON content type 415, read timeout 408),
gzip that honours ``q=0``, and the security headers policy (``docs/security.md``).

Pure ASGI (no ``BaseHTTPMiddleware``) so streaming and cost stay low.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskhub.core.errors import problem_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; rendered as 413."""


class _BodyTimeout(HTTPException):
    """Raised from ``receive`` when the body is not complete within the timeout; rendered as 408."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


class BodyGuardMiddleware:
    """Reject bodies over ``max_body_bytes`` (413), non-JSON bodies on JSON endpoints (415) and
    bodies not complete within ``body_timeout`` seconds (408).

    Every endpoint under ``api_prefix`` takes JSON, except the paths in ``form_paths``, which take
    a form and answer a JSON body with 415 and the path's hint. ``Content-Length`` is checked up
    front; chunked bodies are counted while read.

    The timeout runs from the first read of the body to its last chunk, whatever the pace (a
    client trickling a byte a second is as slow as one that stops). The body is read before any
    dependency runs, so a slow client never holds a database connection; the timeout ends what it
    does hold, a socket and a coroutine. The 408 closes the connection (``Connection: close``),
    since the rest of the body is still on the wire.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        api_prefix: str,
        form_paths: Mapping[str, str] | None = None,
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.max = max_body_bytes
        self.api_prefix = api_prefix
        self.form_paths = dict(form_paths or {})
        self.body_timeout = body_timeout

    async def _reject(
        self, scope: Scope, send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        request_id = scope.get("state", {}).get("request_id")
        response = problem_response(scope["path"], request_id, status=status, detail=detail, headers=headers)
        await response(scope, _empty_receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length_header = _header(scope, b"content-length")
        if length_header is not None:
            try:
                length = int(length_header)
            except ValueError:
                await self._reject(scope, send, 400, "Invalid Content-Length header.")
                return
            if length > self.max:
                await self._reject(scope, send, 413, f"The request body is larger than {self.max} bytes.")
                return
        else:
            length = -1  # chunked or absent
        path: str = scope["path"]
        if path.startswith(self.api_prefix) and length != 0:
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            form_hint = self.form_paths.get(path)
            if form_hint is not None:
                if _is_json(content_type):
                    await self._reject(scope, send, 415, form_hint)
                    return
            elif (length > 0 or _header(scope, b"transfer-encoding") is not None) and not _is_json(content_type):
                await self._reject(scope, send, 415, "Send the body as JSON with Content-Type: application/json.")
                return

        received = 0
        response_started = False
        body_done = False
        deadline: float | None = None

        async def limited_receive() -> Message:
            nonlocal received, body_done, deadline
            if body_done or self.body_timeout is None:
                message = await receive()  # after the body: disconnect notices, never timed
            else:
                if deadline is None:
                    deadline = asyncio.get_running_loop().time() + self.body_timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise _BodyTimeout(
                        408,
                        f"The request body did not arrive within {self.body_timeout:g} s.",
                        headers={"Connection": "close"},  # rendered by the app's handler, or below
                    ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max:
                    raise _BodyTooLarge(413, f"The request body is larger than {self.max} bytes.")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._reject(scope, send, 413, f"The request body is larger than {self.max} bytes.")
        except _BodyTimeout as exc:
            if not response_started:
                await self._reject(scope, send, 408, str(exc.detail), headers=exc.headers)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an ``Accept-Encoding`` value accepts gzip: listed (or ``*``) with a weight above
    zero (RFC 9110 12.5.3: ``gzip;q=0`` means "not gzip"). A member with a malformed weight counts
    as not acceptable."""
    weights: dict[str, float] = {}
    for member in accept_encoding.split(","):
        coding, _, params = member.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        params = params.strip().lower()
        if params:
            name, _, value = params.partition("=")
            try:
                weight = float(value) if name.strip() == "q" and len(value.strip()) <= 5 else 0.0
            except ValueError:
                weight = 0.0
            if not 0.0 <= weight <= 1.0:
                weight = 0.0
        weights[coding] = weight
    if "gzip" in weights:
        return weights["gzip"] > 0
    return weights.get("*", 0.0) > 0


class NegotiatingGZipMiddleware(GZipMiddleware):
    """Starlette's gzip, which compresses whenever the text ``gzip`` appears in ``Accept-Encoding``,
    made to negotiate (RFC 9110 12.5.3): weights count (``gzip;q=0`` or a malformed weight gets
    identity) and codings are case-insensitive (``GZIP`` is gzip). Starlette decides on the header
    as this layer rewrites it: ``gzip`` when accepted, absent otherwise."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
            if accepts_gzip(Headers(scope=scope).get("accept-encoding", "")):
                headers.append((b"accept-encoding", b"gzip"))
            # In place, not a copy: the outer layers read what routing writes into this scope
            # (``route``: the metrics' and access log's route template).
            scope["headers"] = headers
        await super().__call__(scope, receive, send)


API_CSP = "default-src 'none'; frame-ancestors 'none'"
"""JSON needs no resources: nothing may load, nothing may frame it (OWASP REST Security Cheat Sheet)."""
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    """Put the security headers policy (``docs/security.md``) on every response.

    Every response: ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
    ``X-Frame-Options: DENY``, and with ``hsts`` (``TASKHUB_COOKIE_SECURE=true``, i.e. served over
    HTTPS) ``Strict-Transport-Security``. Responses that set no ``Content-Security-Policy`` of their
    own (the API; the dashboard and ``/docs`` set theirs) get :data:`API_CSP`.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        defaults = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", API_CSP.encode()),
        ]
        if hsts:
            defaults.append((b"strict-transport-security", HSTS.encode()))
        self.defaults = defaults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in self.defaults if item[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_policy)
