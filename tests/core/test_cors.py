"""CORS is the outermost layer after the request id: every answer carries its headers, and
preflights are answered before the rate limiter could count them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskhub.config import Settings
from tests.conftest import client_for

ORIGIN = "https://app.example.com"


async def test_preflights_spend_no_budget_and_429_carries_cors(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    app = await app_factory(
        settings_factory(rate_limit_enabled=True, rate_limit_anon="2 per minute", cors_origins=[ORIGIN])
    )
    async with client_for(app) as c:
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        for _ in range(5):
            r = await c.options("/api/v1/tasks", headers=preflight)
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == ORIGIN
            assert "ratelimit-remaining" not in r.headers
        codes = []
        for _ in range(3):
            r = await c.get("/api/v1/tasks", headers={"Origin": ORIGIN})
            codes.append(r.status_code)
            assert r.headers["access-control-allow-origin"] == ORIGIN
            assert r.headers["x-request-id"]
        assert codes == [401, 401, 429]  # the five preflights spent nothing


async def test_413_and_415_carry_cors(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    app = await app_factory(settings_factory(max_body_bytes=100, cors_origins=[ORIGIN]))
    async with client_for(app) as c:
        big = await c.post(
            "/api/v1/tasks",
            content=b"{" + b" " * 200 + b"}",
            headers={"Origin": ORIGIN, "Content-Type": "application/json"},
        )
        assert big.status_code == 413
        assert big.headers["access-control-allow-origin"] == ORIGIN
        text = await c.post("/api/v1/tasks", content=b"title", headers={"Origin": ORIGIN, "Content-Type": "text/plain"})
        assert text.status_code == 415
        assert text.headers["access-control-allow-origin"] == ORIGIN
