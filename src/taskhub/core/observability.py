"""Request ids, structured logs (structlog), the access log and the HTTP metrics.

Every log line is one JSON object with ``TASKHUB_LOG_FORMAT=json`` (aligned text with
``console``). Lines written while a request is served carry its ``request_id`` and, once the
caller is authenticated, its ``user_id`` (structlog context variables). The access log line of a
request adds ``method``, ``path``, ``route`` (the template), ``status`` and ``duration_ms``; it is
formatted here, not by structlog's processor chain, because that chain cost ~80 us per line
(ConsoleRenderer) against ~5 us for this one (``docs/operations.md``).

What must never be logged: passwords, tokens (access, refresh, the ``Authorization`` header),
query strings (a client may put anything there). Paths are logged; every path of the API is
free of secrets (tokens travel in headers and bodies only, SPEC "Events").
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import IO, Any

import orjson
import structlog
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskhub.core.errors import problem_response
from taskhub.core.metrics import UNMATCHED, Metrics, metrics

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
log = structlog.get_logger("taskhub.access")

#: The id of the request being served (None outside a request): read by the outbox, so that an
#: event carries the id of the request that caused it (``message_headers``), and by the logs.
request_id_var: ContextVar[str | None] = ContextVar("taskhub_request_id", default=None)
#: The authenticated caller of the request being served (set by :func:`bind_user`), for the logs.
user_id_var: ContextVar[str | None] = ContextVar("taskhub_user_id", default=None)

#: Set by ``core.tracing`` when tracing is on: writes the current trace context into a carrier
#: (W3C ``traceparent``/``tracestate``). None means tracing is off and costs nothing.
trace_injector: Callable[[dict[str, str]], None] | None = None
#: Set by ``core.tracing`` when tracing is on: the current trace id as 32 hex digits, or None.
trace_id_getter: Callable[[], str | None] | None = None
#: Set by ``core.tracing`` when tracing is on: ``(name, kind, incoming headers, attributes)`` ->
#: a context manager that runs a span continuing the headers' trace and yields the headers that
#: carry *its* context onwards. None: tracing is off (:func:`event_scope` then costs a dict copy).
event_span_factory: (
    Callable[[str, str, dict[str, str], dict[str, str]], AbstractContextManager[dict[str, str]]] | None
) = None

REQUEST_ID_HEADER = "x-request-id"


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """True when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not ``true``: then
    ``core.tracing`` is loaded; otherwise nothing of OpenTelemetry's SDK ever is."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def message_headers() -> dict[str, str]:
    """Headers that let a consumer of an event continue the request that caused it:
    ``x-request-id`` and, when tracing is on, ``traceparent`` (W3C Trace Context). Empty outside
    a request. Stored with each outbox row and sent as the broker message's headers."""
    headers: dict[str, str] = {}
    request_id = request_id_var.get()
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    if trace_injector is not None:
        trace_injector(headers)
    return headers


@contextlib.contextmanager
def event_scope(
    name: str, event: Mapping[str, Any], headers: Mapping[str, Any] | None, *, kind: str = "consumer"
) -> Iterator[dict[str, str]]:
    """Handle one event in the context of the request that caused it.

    While the block runs, log lines carry the event's ``event_id`` and the ``request_id`` from its
    ``headers`` (``x-request-id``: the outbox row's, then the broker message's), so one grep for a
    request id finds the request and everything its events caused. With tracing on, the block runs
    in a span ``name`` of ``kind`` (``producer``: publishing; ``consumer``: handling) that is a
    child of the headers' trace context. Yields the headers to send onwards (the request id, and
    the ``traceparent`` of this span).
    """
    incoming = {str(k): str(v) for k, v in (headers or {}).items() if isinstance(v, str | bytes | int)}
    token = request_id_var.set(incoming.get(REQUEST_ID_HEADER))
    try:
        with structlog.contextvars.bound_contextvars(event_id=str(event.get("event_id"))):
            if event_span_factory is None:
                yield incoming
                return
            attributes = {
                "messaging.message.id": str(event.get("event_id")),
                "taskhub.event.type": str(event.get("type")),
            }
            with event_span_factory(name, kind, incoming, attributes) as outgoing:
                yield outgoing
    finally:
        request_id_var.reset(token)


class AccessLog:
    """Writes access-log lines in the configured format, bypassing structlog's processor chain.

    Args:
        stream: where lines go (stderr, like every other log line). fmt: ``json`` or ``console``.
        enabled: False when the level is above INFO (the access log is INFO).
    """

    def __init__(self, stream: IO[str], fmt: str, *, enabled: bool = True) -> None:
        self.stream = stream
        self.json = fmt == "json"
        self.enabled = enabled
        self._second = -1
        self._prefix = ""

    def _timestamp(self) -> str:
        # The same shape as structlog's TimeStamper(fmt="iso", utc=True); the date part is
        # formatted once per second.
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"

    def write(self, fields: dict[str, Any]) -> None:
        """Write one ``request`` line with ``fields`` (values: str, int, float or None)."""
        if not self.enabled:
            return
        timestamp = self._timestamp()
        if self.json:
            record = {"event": "request", "level": "info", "logger": "taskhub.access", "timestamp": timestamp}
            record.update(fields)
            line = orjson.dumps(record).decode() + "\n"
        else:
            pairs = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            line = f"{timestamp} [info     ] request                        {pairs}\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed at shutdown: nothing to do about it
            pass


access_log = AccessLog(sys.stderr, "console")


def add_request_context(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: ``request_id`` and ``user_id`` of the request being served (two plain
    context variables, set per request at a fraction of the cost of structlog's own binding)."""
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
        user_id = user_id_var.get()
        if user_id is not None:
            event_dict.setdefault("user_id", user_id)
    return event_dict


def configure_logging(level: str, fmt: str) -> None:
    """Configure structlog and the stdlib root logger (uvicorn's loggers included) to render alike:
    one JSON object per line with ``fmt="json"``, aligned text with ``"console"``; and the access
    log (:class:`AccessLog`) in the same format."""
    global access_log
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
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
    access_log = AccessLog(sys.stderr, fmt, enabled=numeric_level <= logging.INFO)


def _json_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def bind_user(scope: Scope, user_id: uuid.UUID) -> None:
    """Record the authenticated caller of this request: its access-log line and every log line
    written after this call (in this request) carry ``user_id``."""
    text = str(user_id)
    scope.setdefault("state", {})["user_id"] = text
    user_id_var.set(text)  # reset by the middleware when the request ends


class InFlight:
    """How many requests this process is serving (read by the graceful drain on SIGTERM)."""

    def __init__(self) -> None:
        self.count = 0


class RouteTemplates:
    """Route templates with their full path (``/api/v1/tasks/{task_id}``), from the app's routes.

    FastAPI puts the matched *original* route into ``scope["route"]``, whose path lacks the
    prefixes of the routers that include it; :func:`fastapi.routing.iter_route_contexts` gives
    every route with its full path, once (the table is built on the first request, when every
    router is included).
    """

    def __init__(self) -> None:
        self._by_route: dict[int, str] | None = None
        self._candidates: list[tuple[Any, str]] = []

    def _build(self, app: Any) -> dict[int, str]:
        from fastapi.routing import iter_route_contexts

        by_route: dict[int, str] = {}
        ambiguous: set[int] = set()
        for context in iter_route_contexts(getattr(app, "routes", [])):
            template = context.path_format
            if not isinstance(template, str):
                continue
            self._candidates.append((context, template))
            key = id(context.original_route)
            if key in by_route and by_route[key] != template:
                ambiguous.add(key)  # one route object under two prefixes: matched per request
            by_route[key] = template
        for key in ambiguous:
            del by_route[key]
        self._by_route = by_route
        return by_route

    def resolve(self, scope: Scope, status: int) -> str:
        """The template of the route that served ``scope``, or :data:`~taskhub.core.metrics.UNMATCHED`:
        label values stay bounded whatever paths clients send.

        A request answered before routing (429, 413, 415 from middleware) is matched here against
        the routes; a 404 without a route is unmatched by definition.
        """
        by_route = self._by_route if self._by_route is not None else self._build(scope.get("app"))
        route = scope.get("route")
        if route is not None:
            template = by_route.get(id(route))
            if template is not None:
                return template
        elif status == 404:
            return UNMATCHED
        for context, template in self._candidates:
            match, _ = context.matches(scope)
            if match is not Match.NONE:
                return template
        return UNMATCHED


class RequestIdMiddleware:
    """Echo a sane ``X-Request-ID`` or make one; bind it to the logs; count the request in the
    metrics (``taskhub_http_*``: method, route template, status, duration, in flight); write one
    access-log line. Pure ASGI: one layer for all of it, so the observability of a request costs
    one ``send`` wrapper.

    The id is stored in ``scope["state"]["request_id"]`` for error bodies.

    Args:
        access_log_enabled: write the access-log line. api_prefix: path prefix (or tuple of
            them) whose answers get ``Cache-Control: private, no-cache``. metrics_enabled: count requests.
        in_flight: the counter that the graceful drain reads (see ``ops.lifecycle``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log_enabled: bool = True,
        api_prefix: str | tuple[str, ...] = "/api/",
        metrics_enabled: bool = True,
        in_flight: InFlight | None = None,
    ) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled
        self.api_prefix = api_prefix
        self.metrics: Metrics | None = metrics() if metrics_enabled else None
        self.in_flight = in_flight or InFlight()
        self.routes = RouteTemplates()

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

        token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)
        m = self.metrics
        self.in_flight.count += 1
        if m is not None:
            m.http_in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Unexpected errors end here (inside the request id) as a bare 500 problem:
            # logged with the traceback, never shown to the client.
            log.error("unhandled_error", path=scope["path"], exc_info=exc)
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
            seconds = time.perf_counter() - start
            self.in_flight.count -= 1
            # No response at all: the client went away first (nginx's 499, "client closed request").
            status = status_holder[0] or 499
            route = self.routes.resolve(scope, status) if (m is not None or self.access_log_enabled) else UNMATCHED
            if m is not None:
                m.http_in_flight.dec()
                m.observe_request(scope["method"], route, status, seconds)
            if self.access_log_enabled:
                fields: dict[str, Any] = {
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "user_id": scope["state"].get("user_id"),
                }
                if trace_id_getter is not None:
                    fields["trace_id"] = trace_id_getter()
                access_log.write(fields)
            user_id_var.reset(user_token)
            request_id_var.reset(token)
