"""Request ids, structured logs (structlog) and the access log."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskhub.core.errors import problem_response

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
access_log = structlog.get_logger("taskhub.access")


def configure_logging(level: str, fmt: str) -> None:
    """Configure structlog and the stdlib root logger (uvicorn's loggers included) to render alike:
    one JSON object per line with ``fmt="json"``, aligned text with ``"console"``."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn.access stays as `serve --access-log` left it
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class RequestIdMiddleware:
    """Echo a sane ``X-Request-ID`` or make one; bind it to the logs; write one access-log line.

    The id is stored in ``scope["state"]["request_id"]`` for error bodies.
    """

    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True, api_prefix: str = "/api/") -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        raw_id = request_id.encode()
        status_holder = [0]
        start = time.perf_counter()

        is_api = scope["path"].startswith(self.api_prefix)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", raw_id)]
                if is_api and not any(k.lower() == b"cache-control" for k, _ in headers):
                    # API answers are per user: shared caches must not keep them, browsers revalidate.
                    headers.append((b"cache-control", b"private, no-cache"))
                message["headers"] = headers
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Unexpected errors end here (inside the request id) as a bare 500 problem:
            # logged with the traceback, never shown to the client.
            access_log.error("unhandled_error", path=scope["path"], exc_info=exc)
            if status_holder[0]:
                raise
            response = problem_response(
                scope["path"],
                request_id,
                status=500,
                detail="An unexpected error occurred; it has been logged.",
            )
            await response(scope, receive, send_with_id)
        finally:
            if self.access_log_enabled:
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status_holder[0],
                    duration_ms=round((time.perf_counter() - start) * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")
