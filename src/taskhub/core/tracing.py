"""OpenTelemetry traces: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set.

Off, nothing of this module, the OpenTelemetry SDK or an instrumentation library is imported, and
no request pays for a span (``create_app`` keeps FastAPI's native telemetry disabled). On:

- HTTP server spans from FastAPI's native telemetry (``http.route`` = the route template), with
  spans for dependency resolution, the endpoint and serialization;
- a client span per SQL statement (opentelemetry-instrumentation-sqlalchemy) on every engine of
  the process, and per Redis command (opentelemetry-instrumentation-redis);
- the W3C trace context of the request is written into each outbox row's ``headers`` (next to
  ``x-request-id``) through ``core.observability.message_headers``, so whoever publishes or
  consumes the event continues the request's trace (:func:`continue_trace`);
- the access-log line carries ``trace_id``.

Spans go to the OTLP/HTTP exporter configured by the standard variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``...) through a batch processor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from taskhub.core import observability

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: Requests that never get a span: probes and scrapes (every few seconds, never interesting).
UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})


class Tracing:
    """The tracer provider of one process and the instrumentation installed on it.

    Args:
        provider: where spans go (tests pass one with an in-memory exporter).
        owns_provider: shut the provider down (flushing its spans) in :meth:`shutdown`.
    """

    def __init__(self, provider: TracerProvider, *, owns_provider: bool = False) -> None:
        self.provider = provider
        self.owns_provider = owns_provider
        self.tracer = provider.get_tracer("taskhub")
        self._instrumentors: list[Any] = []

    @classmethod
    def from_environment(cls, service_name: str) -> Tracing:
        """A provider exporting over OTLP/HTTP as the ``OTEL_*`` variables say; ``service_name``
        unless ``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) names one."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        resource = Resource.create({SERVICE_NAME: service_name}).merge(Resource.create())
        if resource.attributes.get(SERVICE_NAME) == "unknown_service":
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider, owns_provider=True)

    def fastapi_telemetry(self) -> dict[str, Any]:
        """``FastAPI(telemetry=...)``: server spans on this provider; FastAPI's metrics and logs
        stay off (Prometheus and structlog do those)."""
        return {
            "tracer_provider": self.provider,
            "tracing": True,
            "operation_spans": True,
            "metrics": False,
            "logs": False,
            "exclude": lambda scope: scope.get("path") in UNTRACED_PATHS,
        }

    def start(self, engines: Sequence[AsyncEngine] = (), *, redis: bool = True) -> None:
        """Instrument ``engines`` (SQL spans) and the Redis client library, and hook the trace
        context into the outbox headers and the access log. Call once the engines exist."""
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        sql = SQLAlchemyInstrumentor()
        # One engine per pool: a reader made with execution_options() shares the primary's
        # events, and instrumenting both would make two spans per statement.
        distinct = {id(e.sync_engine.pool): e.sync_engine for e in reversed(engines)}
        # skip_dep_check: the instrumentation declares "sqlalchemy < 2.1" but only uses engine
        # events that 2.1 keeps (tests/core/test_tracing.py proves the spans on every release).
        sql.instrument(engines=list(distinct.values()), tracer_provider=self.provider, skip_dep_check=True)
        self._instrumentors.append(sql)
        if redis:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            instrumentor = RedisInstrumentor()
            instrumentor.instrument(tracer_provider=self.provider)
            self._instrumentors.append(instrumentor)
        observability.trace_injector = inject
        observability.trace_id_getter = current_trace_id
        observability.event_span_factory = self.event_span

    def stop(self) -> None:
        """Remove the instrumentation (the lifespan's end; tests start several apps)."""
        observability.trace_injector = None
        observability.trace_id_getter = None
        observability.event_span_factory = None
        while self._instrumentors:
            self._instrumentors.pop().uninstrument()

    def shutdown(self) -> None:
        """Flush and close the provider when it is this object's."""
        if self.owns_provider:
            self.provider.shutdown()

    @contextlib.contextmanager
    def event_span(
        self, name: str, kind: str, headers: dict[str, str], attributes: dict[str, str]
    ) -> Iterator[dict[str, str]]:
        """A ``producer`` or ``consumer`` span ``name``, child of the trace context in ``headers``;
        yields ``headers`` with this span's ``traceparent`` (what to publish onwards)."""
        span_kind = SpanKind.PRODUCER if kind == "producer" else SpanKind.CONSUMER
        parent = propagate.extract(headers)
        with self.tracer.start_as_current_span(
            name, context=parent, kind=span_kind, attributes={"messaging.system": "rabbitmq", **attributes}
        ):
            outgoing = dict(headers)
            propagate.inject(outgoing)
            yield outgoing


def inject(carrier: dict[str, str]) -> None:
    """Write the current trace context into ``carrier`` (``traceparent``, ``tracestate``)."""
    propagate.inject(carrier)


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside a sampled span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextlib.contextmanager
def continue_trace(headers: Mapping[str, Any] | None) -> Iterator[None]:
    """Make the trace context carried in ``headers`` (an outbox row's or a broker message's)
    current while the block runs, so that spans started in it are children of the request's."""
    carrier = {str(k): str(v) for k, v in (headers or {}).items()}
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
