"""``GET /metrics``: exact names and label sets after known traffic (both backends)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taskhub.config import Settings
from tests.conftest import Api, client_for
from tests.helpers import Samples, ctx_of, parse_metrics, sample

pytestmark = pytest.mark.asyncio

TASK = "/api/v1/tasks/{task_id}"


async def scrape(c: httpx.AsyncClient, **headers: str) -> Samples:
    r = await c.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_metrics(r.text)


def labels_of(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


class TestHttpMetrics:
    async def test_three_404s_count_under_the_template_never_the_raw_path(
        self, client: httpx.AsyncClient, api: Api
    ) -> None:
        h = await api.user("m404@x.io")
        before = await scrape(client)
        missing = [str(uuid.uuid4()) for _ in range(3)]
        for task_id in missing:
            assert (await client.get(f"/api/v1/tasks/{task_id}", headers=h)).status_code == 404
        after = await scrape(client)
        key = {"method": "GET", "route": "/api/v1/tasks/{task_id}", "status": "404"}
        assert (
            sample(after, "taskhub_http_requests_total", **key) - sample(before, "taskhub_http_requests_total", **key)
            == 3
        )
        hist = {"method": "GET", "route": "/api/v1/tasks/{task_id}"}
        assert (
            sample(after, "taskhub_http_request_duration_seconds_count", **hist)
            - sample(before, "taskhub_http_request_duration_seconds_count", **hist)
            == 3
        )
        for labels in labels_of(after, "taskhub_http_requests_total"):
            assert set(labels) == {"method", "route", "status"}
            assert not any(task_id in labels["route"] for task_id in missing)

    async def test_unknown_paths_are_one_unmatched_series(self, client: httpx.AsyncClient) -> None:
        before = await scrape(client)
        paths = [f"/no/such/{uuid.uuid4()}" for _ in range(4)]
        for path in paths:
            assert (await client.get(path)).status_code == 404
        assert (await client.request("BREW", "/api/v1/tasks")).status_code in (401, 405)
        after = await scrape(client)
        key = {"method": "GET", "route": "unmatched", "status": "404"}
        assert (
            sample(after, "taskhub_http_requests_total", **key) - sample(before, "taskhub_http_requests_total", **key)
            == 4
        )
        routes = {labels["route"] for labels in labels_of(after, "taskhub_http_requests_total")}
        methods = {labels["method"] for labels in labels_of(after, "taskhub_http_requests_total")}
        assert not any(path in routes for path in paths)
        assert "BREW" not in methods and "other" in methods  # client-chosen methods are bounded too

    async def test_latency_buckets_resolve_50_and_100_ms(self, client: httpx.AsyncClient) -> None:
        await client.get("/health")
        samples = await scrape(client)
        bounds = {
            labels["le"]
            for labels in labels_of(samples, "taskhub_http_request_duration_seconds_bucket")
            if labels["route"] == "/health"
        }
        assert {"0.05", "0.1", "+Inf"} <= bounds
        buckets = [
            sample(samples, "taskhub_http_request_duration_seconds_bucket", method="GET", route="/health", le=le)
            for le in ("0.05", "0.1", "+Inf")
        ]
        count = sample(samples, "taskhub_http_request_duration_seconds_count", method="GET", route="/health")
        assert buckets == sorted(buckets) and buckets[-1] == count >= 1  # cumulative

    async def test_in_flight_counts_the_scrape_itself(self, client: httpx.AsyncClient) -> None:
        samples = await scrape(client)
        assert sample(samples, "taskhub_http_requests_in_flight") == 1

    async def test_created_series_are_off(self, client: httpx.AsyncClient) -> None:
        text = (await client.get("/metrics")).text
        assert "_created" not in text


class TestDependencyMetrics:
    async def test_cache_hits_and_misses(self, client: httpx.AsyncClient, api: Api) -> None:
        h = await api.user("cache@x.io")
        await api.task(h)
        before = await scrape(client)
        for _ in range(3):
            assert (await client.get("/api/v1/tasks?limit=7", headers=h)).status_code == 200
        after = await scrape(client)

        def delta(cache: str, result: str) -> float:
            return sample(after, "taskhub_cache_requests_total", cache=cache, result=result) - sample(
                before, "taskhub_cache_requests_total", cache=cache, result=result
            )

        assert (delta("response", "miss"), delta("response", "hit")) == (1, 2)
        assert (delta("auth", "miss"), delta("auth", "hit")) == (0, 3)  # decided at api.task already

    async def test_read_statements_count_where_they_ran(self, client: httpx.AsyncClient, api: Api) -> None:
        h = await api.user("reads@x.io")
        task = await api.task(h)
        path = f"/api/v1/tasks/{task['id']}"
        assert (await client.get(path, headers=h)).status_code == 200  # the first read decides authentication
        before = await scrape(client)
        for _ in range(3):
            assert (await client.get(path, headers=h)).status_code == 200
        after = await scrape(client)
        name = "taskhub_db_read_statements_total"
        # three task reads (the authentication decision is cached now) and the second scrape's two
        # outbox backlog statements; no replicas here, so everything ran on the primary
        assert sample(after, name, target="primary") - sample(before, name, target="primary") == 5
        assert all(set(labels) == {"target"} for labels in labels_of(after, name))

    async def test_pool_occupancy_per_engine(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        # No relay here: the embedded relay's leader holds a connection of the primary's pool.
        app = await app_factory(settings_factory(relay_enabled=False))
        async with client_for(app) as client:
            samples = await scrape(client)
        engines = {labels["engine"] for labels in labels_of(samples, "taskhub_db_pool_size_connections")}
        # SQLite reads have a pool of their own; PostgreSQL without replicas reads on the primary's.
        # (The registry is per process: an earlier test's SQLite app may have left "reader".)
        assert (
            {"primary", "reader"}
            >= engines
            >= ({"primary", "reader"} if ctx_of(app).db.dialect == "sqlite" else {"primary"})
        )
        expected_size = 5 if ctx_of(app).db.dialect == "sqlite" else ctx_of(app).settings.database_pool_size
        assert sample(samples, "taskhub_db_pool_size_connections", engine="primary") == expected_size
        assert sample(samples, "taskhub_db_pool_checked_out_connections", engine="primary") == 0

    async def test_outbox_backlog(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(settings_factory(relay_enabled=False))  # events stay unsent
        async with client_for(app) as client:
            api = Api(client)
            h = await api.user("outbox@x.io")
            before = await scrape(client)
            for _ in range(2):
                await api.task(h)
            after = await scrape(client)
        assert sample(after, "taskhub_outbox_unsent_events") - sample(before, "taskhub_outbox_unsent_events") == 2
        assert sample(after, "taskhub_outbox_oldest_unsent_age_seconds") > 0
        assert sample(after, "taskhub_outbox_scrape_error") == 0

    async def test_rate_limit_rejections_by_policy(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(settings_factory(rate_limit_enabled=True, rate_limit_anon="2 per minute"))
        async with client_for(app) as c:
            before = await scrape(c)
            statuses = [(await c.get("/api/v1/tasks")).status_code for _ in range(3)]
            assert statuses == [401, 401, 429]
            after = await scrape(c)
        assert (
            sample(after, "taskhub_rate_limit_rejections_total", policy="anon")
            - sample(before, "taskhub_rate_limit_rejections_total", policy="anon")
            == 1
        )
        # Rejected before routing, and still counted under its route template.
        key = {"method": "GET", "route": "/api/v1/tasks", "status": "429"}
        assert (
            sample(after, "taskhub_http_requests_total", **key) - sample(before, "taskhub_http_requests_total", **key)
            == 1
        )

    @pytest.mark.postgres_only  # pool limits are PostgreSQL engine settings
    async def test_pool_waits_and_timeouts(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        settings = settings_factory(database_pool_size=1, database_max_overflow=0, database_pool_timeout=0.3)
        app = await app_factory(settings)
        async with client_for(app) as c:
            h = await Api(c).user("waits@x.io")
            before = await scrape(c)
            async with ctx_of(app).db.primary.connect():  # hold the only connection
                inside = await scrape(c)
                assert (await c.post("/api/v1/tasks", json={"title": "t"}, headers=h)).status_code == 503
            after = await scrape(c)
        assert sample(inside, "taskhub_db_pool_checked_out_connections", engine="primary") == 1
        # The scrape inside waited too (its outbox read shares the primary's pool), and still answered.
        assert sample(inside, "taskhub_outbox_scrape_error") == 1
        for name in ("taskhub_db_pool_waits_total", "taskhub_db_pool_timeouts_total"):
            assert sample(after, name, engine="primary") - sample(before, name, engine="primary") == 2
        waited = sample(after, "taskhub_db_pool_wait_seconds_total", engine="primary") - sample(
            before, "taskhub_db_pool_wait_seconds_total", engine="primary"
        )
        assert 0.6 <= waited < 2.0


class TestMetricsToken:
    async def test_token_required_when_configured(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(settings_factory(metrics_token="s3cret-metrics-token"))
        async with client_for(app) as c:
            r = await c.get("/metrics")
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert (await c.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
            ok = await c.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
            assert ok.status_code == 200 and "taskhub_http_requests_total" in ok.text
