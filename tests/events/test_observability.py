"""One change followed from the request through the outbox and RabbitMQ to the worker: the span
tree (in-memory exporter), the relay's and the worker's metrics, and the SSE gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from taskhub.config import Settings
from taskhub.core.tracing import Tracing
from taskhub.events.models import ProcessedEvent
from taskhub.worker.consumer import Worker
from tests.conftest import Api, client_for
from tests.events.conftest import BrokerNames
from tests.helpers import ctx_of, parse_metrics, sample


def value(name: str, **labels: str) -> float:
    """A sample of this process's registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        if span is ancestor:
            return True
    return False


async def wait_for(predicate: Callable[[], Any], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.postgres_only  # the production path: PostgreSQL, RabbitMQ, a worker
async def test_span_tree_request_relay_broker_worker(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings], broker_names: BrokerNames
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = settings_factory(
        broker_url=broker_names.url,
        broker_exchange=broker_names.exchange,
        broker_queue_prefix=broker_names.prefix,
        worker_retry_delays=[0.2],
    )
    app: FastAPI = await app_factory(settings, tracing=Tracing(provider))  # its lifespan runs the relay
    db = ctx_of(app).db
    worker = Worker(db, settings)
    await worker.start()
    published_before = value("taskhub_relay_published_events_total", sink="rabbitmq")
    handled_before = value("taskhub_worker_messages_total", consumer="notifications", outcome="handled")
    try:
        async with client_for(app) as c:
            h = await Api(c).user("e2e-trace@x.io")
            exporter.clear()
            r = await c.post("/api/v1/tasks", json={"title": "followed"}, headers={**h, "X-Request-ID": "e2e-req-1"})
            assert r.status_code == 201

            async def both_consumers_applied() -> bool:
                async with db.unit_of_work(readonly=True) as session:
                    count = (await session.execute(select(func.count()).select_from(ProcessedEvent))).scalar_one()
                return int(count) == 2

            await wait_for(both_consumers_applied, 20, "notifications and analytics to apply task.created")
            await asyncio.sleep(0.2)  # the consumer spans end after the ack
            scraped = parse_metrics((await c.get("/metrics")).text)
    finally:
        await worker.stop()
    spans = list(exporter.get_finished_spans())
    [root] = [s for s in spans if s.kind is SpanKind.SERVER and s.name == "POST /api/v1/tasks"]
    [publish] = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert publish.name == f"publish {broker_names.exchange}"
    assert publish.context.trace_id == root.context.trace_id
    assert descends_from(publish, root, spans)  # through the outbox row's traceparent
    assert publish.attributes is not None and publish.attributes["messaging.message.id"]
    consumers = sorted((s for s in spans if s.kind is SpanKind.CONSUMER), key=lambda s: s.name)
    assert [s.name for s in consumers] == [
        f"process {broker_names.prefix}.analytics",
        f"process {broker_names.prefix}.notifications",
    ]
    for consume in consumers:  # through the message headers
        assert consume.parent is not None and consume.parent.span_id == publish.context.span_id
        assert consume.context.trace_id == root.context.trace_id
        statements = [
            str((s.attributes or {}).get("db.statement", "")) for s in spans if descends_from(s, consume, spans)
        ]
        assert any("processed_events" in st for st in statements), statements  # the handler's unit of work
    # Metrics of the same journey (one process: relay, API and worker share the registry).
    assert value("taskhub_relay_published_events_total", sink="rabbitmq") - published_before == 1
    assert value("taskhub_worker_messages_total", consumer="notifications", outcome="handled") - handled_before == 1
    assert sample(scraped, "taskhub_relay_leader") == 1
    assert sample(scraped, "taskhub_worker_handler_duration_seconds_count", consumer="notifications") >= 1


async def test_sse_streams_open_gauge(app: FastAPI) -> None:
    hub = app.state.events.hub
    before = value("taskhub_sse_streams_open")
    with hub.subscribe("owner-a"), hub.subscribe("owner-b"):
        assert value("taskhub_sse_streams_open") - before == 2
        async with client_for(app) as c:
            assert sample(parse_metrics((await c.get("/metrics")).text), "taskhub_sse_streams_open") == before + 2
    assert value("taskhub_sse_streams_open") == before
