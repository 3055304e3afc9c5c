"""``/health``, ``/ready``, ``/docs``, ``/openapi.json``."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.asyncio


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"status", "version", "uptime_s"}
    assert body["status"] == "ok" and body["version"] == "0.1.0" and body["uptime_s"] >= 0


async def test_ready_checks_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert body["checks"]["cache"] == {"ok": True, "backend": "in-process"}


async def test_ready_503_when_database_down(app_factory: object, settings_factory: object, tmp_path: object) -> None:
    from tests.conftest import client_for

    settings = settings_factory(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")  # type: ignore[operator]
    app = await app_factory(settings)  # type: ignore[operator]
    async with client_for(app) as c:
        r = await c.get("/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["database"]["ok"] is False
        assert (await c.get("/health")).status_code == 200


async def test_docs_and_openapi(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text  # works offline
    js = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000
    assert (await client.get("/docs/assets/../app.py")).status_code == 404
    assert (await client.get("/docs/oauth2-redirect")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "Taskhub"
    assert "/api/v1/tasks" in schema["paths"]
    assert "/api/v1/auth/token" in schema["paths"]


async def test_dashboard_served_with_csp(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert (await client.get("/static/../../config.py")).status_code == 404


@pytest.mark.postgres_only  # pool size and timeout are PostgreSQL engine settings (SQLite has no pool limit)
async def test_pool_exhaustion_is_503_with_retry_after(app_factory: object, settings_factory: object) -> None:
    """No free connection within the pool timeout: a clean, retryable 503, never a 500."""
    from tests.conftest import Api, client_for
    from tests.helpers import ctx_of

    # The relay is off: its passes would take the one connection too, at times of their own.
    settings = settings_factory(
        database_pool_size=1, database_max_overflow=0, database_pool_timeout=0.3, relay_enabled=False
    )  # type: ignore[operator]
    app = await app_factory(settings)  # type: ignore[operator]
    async with client_for(app) as c:
        h = await Api(c).user("pool@x.io")
        async with ctx_of(app).db.primary.connect():  # hold the only connection
            r = await c.post("/api/v1/tasks", json={"title": "t"}, headers=h)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "Service unavailable"
        assert (await c.post("/api/v1/tasks", json={"title": "t"}, headers=h)).status_code == 201
