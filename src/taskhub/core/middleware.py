"""ASGI middleware for the request body: size limit (413) and JSON content type (415).

Pure ASGI (no ``BaseHTTPMiddleware``) so streaming and cost stay low.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskhub.core.errors import problem_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; rendered as 413."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


class BodyGuardMiddleware:
    """Reject bodies over ``max_body_bytes`` (413) and non-JSON bodies on JSON endpoints (415).

    Every endpoint under ``api_prefix`` takes JSON, except the paths in ``form_paths``, which take
    a form and answer a JSON body with 415 and the path's hint. ``Content-Length`` is checked up
    front; chunked bodies are counted while read.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        api_prefix: str,
        form_paths: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.max = max_body_bytes
        self.api_prefix = api_prefix
        self.form_paths = dict(form_paths or {})

    async def _reject(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        request_id = scope.get("state", {}).get("request_id")
        response = problem_response(scope["path"], request_id, status=status, detail=detail)
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

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
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


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
