"""Traces with the OpenTelemetry SDK's in-memory exporter: the span tree of a request, the trace
context written into the outbox row, and nothing of the SDK loaded when tracing is off."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from taskhub.config import Settings
from taskhub.core import observability
from taskhub.core.tracing import Tracing, continue_trace
from taskhub.events.models import OutboxEvent
from tests.conftest import Api, client_for
from tests.helpers import ctx_of

REDIS_URL = os.environ.get("TASKHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def in_memory() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


def server_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.kind is SpanKind.SERVER and s.name == name]
    return span


async def test_request_span_tree_and_outbox_trace_context(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    tracing, exporter = in_memory()
    app: FastAPI = await app_factory(settings_factory(), tracing=tracing)
    async with client_for(app) as c:
        h = await Api(c).user("trace@x.io")
        exporter.clear()
        r = await c.post("/api/v1/tasks", json={"title": "traced"}, headers=h)
        assert r.status_code == 201
    spans = list(exporter.get_finished_spans())
    root = server_span(spans, "POST /api/v1/tasks")
    assert root.attributes is not None and root.attributes["http.route"] == "/api/v1/tasks"
    assert root.parent is None
    by_id = {s.context.span_id: s for s in spans}
    sql = [s for s in spans if s.kind is SpanKind.CLIENT and s.attributes and "db.statement" in s.attributes]
    statements = [str(s.attributes["db.statement"]) for s in sql if s.attributes]
    # (On PostgreSQL one statement inserts both: a data-modifying CTE.)
    assert any("INSERT INTO tasks" in st for st in statements), statements
    assert any("INSERT INTO outbox" in st for st in statements), statements
    inserts = [s for s in sql if "INSERT INTO tasks" in str((s.attributes or {}).get("db.statement"))]
    assert inserts and all(s.context.trace_id == root.context.trace_id for s in inserts)
    # Every span of the request's trace descends from its server span (the embedded relay's own
    # polling statements are traces of their own; its handlers continue this one, see below).
    for span in spans:
        if span.context.trace_id == root.context.trace_id and span is not root:
            assert root in ancestors(span, by_id), span.name
    # The outbox row carries the request id and a traceparent of the same trace.
    async with ctx_of(app).db.unit_of_work(readonly=True) as session:
        [headers] = (await session.execute(select(OutboxEvent.headers))).scalars().all()
    assert headers is not None and headers["x-request-id"] == r.headers["x-request-id"]
    version, trace_id, parent_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id) == ("00", format(root.context.trace_id, "032x"))
    assert int(flags, 16) & 1  # sampled
    assert int(parent_id, 16) in by_id  # a span of this request is the parent of what follows
    # ... which is what a consumer continues from:
    with continue_trace(headers), tracing.tracer.start_as_current_span("consume") as consume:
        assert consume.get_span_context().trace_id == root.context.trace_id
    [consumed] = [s for s in exporter.get_finished_spans() if s.name == "consume"]
    assert consumed.parent is not None and consumed.parent.span_id == int(parent_id, 16)


async def test_probes_are_not_traced_and_the_access_log_names_the_trace(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracing, exporter = in_memory()
    app: FastAPI = await app_factory(settings_factory(), tracing=tracing)
    lines = io.StringIO()
    monkeypatch.setattr(observability, "access_log", observability.AccessLog(lines, "json"))
    async with client_for(app) as c:
        for path in ("/health", "/ready", "/metrics"):
            assert (await c.get(path)).status_code == 200
        assert not [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
        assert (await c.get("/api/v1/tasks")).status_code == 401
    root = server_span(list(exporter.get_finished_spans()), "GET /api/v1/tasks")
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [r["trace_id"] for r in records if r["path"] == "/api/v1/tasks"] == [format(root.context.trace_id, "032x")]
    assert [r["trace_id"] for r in records if r["path"] == "/health"] == [None]


async def test_tracing_stops_with_the_app(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    tracing, _ = in_memory()
    await app_factory(settings_factory(), tracing=tracing)
    assert observability.trace_injector is not None
    tracing.stop()
    assert observability.trace_injector is None and observability.trace_id_getter is None


@pytest.mark.postgres_only  # one backend is enough: Redis is the same for both
async def test_redis_commands_are_spans_of_the_request(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    import redis.asyncio as redis_asyncio

    try:
        probe = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        await probe.ping()
        await probe.aclose()
    except Exception as exc:  # any failure means "no Redis here"
        from tests.conftest import unavailable

        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc!r}")
    tracing, exporter = in_memory()
    app: FastAPI = await app_factory(settings_factory(redis_url=REDIS_URL), tracing=tracing)
    async with client_for(app) as c:
        h = await Api(c).user("redis-trace@x.io")
        exporter.clear()
        assert (await c.get("/api/v1/tasks", headers=h)).status_code == 200
    spans = list(exporter.get_finished_spans())
    root = server_span(spans, "GET /api/v1/tasks")
    by_id = {s.context.span_id: s for s in spans}
    redis_spans = [s for s in spans if s.attributes and s.attributes.get("db.system") == "redis"]
    assert redis_spans, [s.name for s in spans]
    assert all(root in ancestors(s, by_id) for s in redis_spans)


def test_off_by_default_loads_nothing_of_the_sdk(tmp_path: Any) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT a served request loads no tracer, exporter or
    instrumentation (the SDK's *metrics* module is imported by redis-py 8 itself, for its own
    observability hooks, which stay inactive unless configured)."""
    script = """
import asyncio, sys, httpx
from asgi_lifespan import LifespanManager
from taskhub.app import create_app
from taskhub.config import Settings

async def main():
    app = create_app(Settings(data_dir=sys.argv[1], jwt_secret="x" * 40))
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get("/api/v1/tasks")).status_code == 401
    loaded = sorted(m for m in sys.modules if m.startswith(
        ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation", "taskhub.core.tracing")))
    print(loaded)

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TASKHUB_"))}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # ... and the same script with an endpoint configured does load them (the check can fail).
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: spans are dropped
    env["OTEL_EXPORTER_OTLP_TIMEOUT"] = "1"  # ... after at most a second at shutdown
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "taskhub.core.tracing" in result.stdout and "opentelemetry.sdk.trace" in result.stdout


async def test_without_tracing_the_outbox_row_carries_the_request_id(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    app: FastAPI = await app_factory(settings_factory())
    async with client_for(app) as c:
        h = await Api(c).user("rid@x.io")
        r = await c.post("/api/v1/tasks", json={"title": "t"}, headers={**h, "X-Request-ID": "req-from-client-7"})
        assert r.status_code == 201
    async with ctx_of(app).db.unit_of_work(readonly=True) as session:
        [headers] = (await session.execute(select(OutboxEvent.headers))).scalars().all()
    assert headers == {"x-request-id": "req-from-client-7"}
