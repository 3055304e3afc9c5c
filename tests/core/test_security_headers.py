"""Response headers against the written policy (docs/security.md, "Response headers"), for the
API, the dashboard and the docs, on success and on every kind of error."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskhub.config import Settings
from tests.conftest import PASSWORD, Api, client_for

pytestmark = pytest.mark.asyncio

EVERYWHERE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"


def assert_policy(r: httpx.Response, *, csp: str | None, cache: str | None, hsts: bool) -> None:
    where = f"{r.request.method} {r.request.url.path} -> {r.status_code}"
    for name, value in EVERYWHERE.items():
        assert r.headers.get(name) == value, (where, name)
    if csp is not None:
        assert r.headers.get("content-security-policy") == csp, where
    if cache is not None:
        assert r.headers.get("cache-control") == cache, where
    assert r.headers.get("strict-transport-security") == (HSTS if hsts else None), where


async def exercise(app: FastAPI, client: httpx.AsyncClient, *, hsts: bool) -> None:
    api = Api(client)
    h = await api.user("policy@x.io")
    task = await api.task(h)
    api_cases = [
        await client.get("/api/v1/tasks", headers=h),
        await client.get(f"/api/v1/tasks/{task['id']}", headers=h),
        await client.get(f"/api/v1/tasks/{task['id']}", headers={**h, "If-None-Match": '"1"'}),  # 304
        await client.post("/api/v1/tasks", json={"title": ""}, headers=h),  # 422
        await client.get("/api/v1/tasks/stats"),  # 401
        await client.post("/api/v1/tasks", content=b"x", headers={**h, "Content-Type": "text/plain"}),  # 415
        await client.get("/api/v1/nothing"),  # 404
        await client.delete(f"/api/v1/tasks/{task['id']}", headers=h),  # 204
    ]
    for r in api_cases:
        assert_policy(r, csp=API_CSP, cache="private, no-cache", hsts=hsts)
    for r in (await client.get("/health"), await client.get("/ready"), await client.get("/openapi.json")):
        assert_policy(r, csp=API_CSP, cache=None, hsts=hsts)

    token_answers = [
        await client.post("/api/v1/auth/login", json={"email": "policy@x.io", "password": PASSWORD}),
        await client.post("/api/v1/auth/token", data={"username": "policy@x.io", "password": PASSWORD}),
    ]
    token_answers.append(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": token_answers[0].json()["refresh_token"]})
    )
    for r in token_answers:
        assert r.status_code == 200
        assert_policy(r, csp=API_CSP, cache="no-store", hsts=hsts)  # tokens are never stored
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/api/v1/auth" in cookie
        assert ("Secure" in cookie) is hsts

    page = await client.get("/")
    importmap = re.findall(r'<script type="importmap">(.*?)</script>', page.text, re.S)[0]
    digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
    dashboard_csp = (
        f"default-src 'self'; script-src 'self' 'sha256-{digest}'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    assert_policy(page, csp=dashboard_csp, cache="no-cache", hsts=hsts)
    for path in ("/static/app.css", "/static/js/app.js"):
        r = await client.get(path)
        assert r.status_code == 200
        assert_policy(r, csp=dashboard_csp, cache="no-cache", hsts=hsts)
    hashed_app = re.findall(r'src="(/static/js/app\.[0-9a-f]{12}\.js)"', page.text)[0]
    assert_policy(
        await client.get(hashed_app), csp=dashboard_csp, cache="public, max-age=31536000, immutable", hsts=hsts
    )
    docs = await client.get("/docs")
    assert_policy(docs, csp=None, cache=None, hsts=hsts)
    csp = docs.headers["content-security-policy"]
    assert csp.startswith("default-src 'self'; script-src 'self' 'sha256-")
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "unsafe-eval" not in csp


async def test_policy_over_http(app: FastAPI, client: httpx.AsyncClient) -> None:
    await exercise(app, client, hsts=False)


async def test_policy_over_https_adds_hsts_and_secure_cookies(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    app = await app_factory(settings_factory(cookie_secure=True))
    async with client_for(app) as client:
        await exercise(app, client, hsts=True)


async def test_even_the_bare_500_follows_the_policy(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskhub.users import service

    async def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(service, "create_user", boom)
    r = await client.post("/api/v1/auth/register", json={"email": "e@x.io", "password": PASSWORD, "name": "E"})
    assert r.status_code == 500
    assert_policy(r, csp=API_CSP, cache="private, no-cache", hsts=False)
