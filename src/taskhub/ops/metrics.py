"""``GET /metrics`` (Prometheus text format) and the per-process telemetry behind it.

The endpoint is open unless ``TASKHUB_METRICS_TOKEN`` is set; then it wants
``Authorization: Bearer <token>`` (Prometheus' ``authorization`` scrape setting) and answers 401
otherwise. Either way it should not be reachable from the internet: nginx does not route it
(``docs/operations.md``, "Observing Taskhub").
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from taskhub.config import Settings
from taskhub.context import AppContext, get_context
from taskhub.core import metrics as core_metrics
from taskhub.core.errors import Unauthorized
from taskhub.core.observability import tracing_requested
from taskhub.core.timeutil import utcnow
from taskhub.db.session import Database
from taskhub.events.models import OutboxEvent

router = APIRouter(tags=["operations"])
log = structlog.get_logger("taskhub.metrics")

#: Unsent events counted at most (a count over a huge backlog would make every scrape slow).
OUTBOX_COUNT_LIMIT = 100_000
#: Seconds the outbox statements may take before the scrape goes on without them.
OUTBOX_QUERY_TIMEOUT = 2.0
#: The families computed at each scrape (not per process): backlog, age of the oldest, read error.
OUTBOX_UNSENT = "taskhub_outbox_unsent_events"
OUTBOX_OLDEST_AGE = "taskhub_outbox_oldest_unsent_age_seconds"
OUTBOX_SCRAPE_ERROR = "taskhub_outbox_scrape_error"


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text exposition of this instance (every worker process of it)."""
    ctx = get_context(request)
    expected = ctx.settings.metrics_token
    if expected:
        presented = request.headers.get("authorization", "")
        scheme, _, token = presented.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise Unauthorized("Send the metrics token in the Authorization: Bearer header.")
    telemetry: Telemetry | None = getattr(request.app.state, "telemetry", None)
    if telemetry is not None:
        telemetry.sampler.sample()
    body = core_metrics.render(await outbox_backlog(ctx.db))
    return Response(body, media_type=core_metrics.CONTENT_TYPE)


async def outbox_backlog(db: Database) -> list[Metric]:
    """The outbox families of one scrape: ``taskhub_outbox_unsent_events`` (capped at
    :data:`OUTBOX_COUNT_LIMIT`) and ``taskhub_outbox_oldest_unsent_age_seconds`` (0 when none),
    read with two statements bound by the ``ix_outbox_unsent`` index on a read engine, within
    :data:`OUTBOX_QUERY_TIMEOUT`; ``taskhub_outbox_scrape_error`` is 1 when they could not be read.
    """
    unsent = select(OutboxEvent.id).where(OutboxEvent.sent_at.is_(None))
    count_stmt = select(func.count()).select_from(unsent.limit(OUTBOX_COUNT_LIMIT).subquery())
    oldest_stmt = unsent.with_only_columns(OutboxEvent.created_at).order_by(OutboxEvent.id).limit(1)
    error = GaugeMetricFamily(OUTBOX_SCRAPE_ERROR, "1 when the outbox backlog could not be read.")

    async def read() -> tuple[int, float]:
        async with db.unit_of_work(readonly=True) as session:
            count = int((await session.execute(count_stmt)).scalar_one())
            oldest = (await session.execute(oldest_stmt)).scalar()
        return count, (utcnow() - oldest).total_seconds() if oldest is not None else 0.0

    try:
        count, age = await asyncio.wait_for(read(), timeout=OUTBOX_QUERY_TIMEOUT)
    except Exception:  # the database is down or slow: /ready says so; the scrape still answers
        error.add_metric([], 1)
        return [error]
    error.add_metric([], 0)
    return [
        GaugeMetricFamily(OUTBOX_UNSENT, "Outbox events not yet published.", value=count),
        GaugeMetricFamily(
            OUTBOX_OLDEST_AGE,
            "Age of the oldest unpublished outbox event (0 when none).",
            value=max(0.0, age),
        ),
        error,
    ]


@dataclass
class Telemetry:
    """The per-process side of the metrics: the :class:`~taskhub.core.metrics.Sampler` of this
    process's pools, caches, CPU and memory and, in multiprocess mode, the loop that samples them
    every :data:`~taskhub.core.metrics.SAMPLE_INTERVAL` seconds (so every worker's values reach
    the shared files, not only the one answering the scrape)."""

    sampler: core_metrics.Sampler
    _loop: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, ctx: AppContext) -> Telemetry:
        """Start sampling for ``ctx`` (call from the app's lifespan)."""
        sampler = core_metrics.Sampler(ctx.db, {"response": ctx.cache, "auth": ctx.auth_cache})
        loop = None
        path = core_metrics.multiprocess_dir()
        if path is not None:
            core_metrics.forget_dead_processes(path)
            loop = asyncio.create_task(sampler.run())
        return cls(sampler, loop)

    async def aclose(self) -> None:
        """Stop the sampling loop; in multiprocess mode, take this process out of the live gauges."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            path = core_metrics.multiprocess_dir()
            if path is not None:
                with contextlib.suppress(OSError):
                    core_metrics.forget_process(os.getpid(), path)


@contextlib.asynccontextmanager
async def standalone_process(
    db: Database, settings: Settings, *, service: str, redis: bool = False
) -> AsyncIterator[None]:
    """Observability of a process without an HTTP server of its own (``taskhub worker``,
    ``taskhub relay``): ``GET /metrics`` on ``TASKHUB_METRICS_PORT`` (prometheus-client's server in
    a daemon thread; 0 turns it off; a port already taken is logged, not fatal), process values
    sampled every :data:`~taskhub.core.metrics.SAMPLE_INTERVAL` seconds, and traces as ``service``
    when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    server = None
    if settings.metrics_port:
        try:
            server, _ = start_http_server(settings.metrics_port)
            log.info("metrics_serving", port=settings.metrics_port)
        except OSError as exc:
            log.warning("metrics_port_unavailable", port=settings.metrics_port, error=str(exc))
    sampler = asyncio.create_task(core_metrics.Sampler(db).run())
    tracing = None
    if tracing_requested():
        from taskhub.core.tracing import Tracing

        tracing = Tracing.from_environment(service)
        tracing.start([db.primary, *db.readers], redis=redis)
    try:
        yield
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        if server is not None:
            server.shutdown()
            server.server_close()
        if tracing is not None:
            tracing.stop()
            await asyncio.to_thread(tracing.shutdown)
