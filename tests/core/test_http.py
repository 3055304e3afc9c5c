"""Cross-cutting HTTP behaviour: problem details, body guard, request ids, gzip, rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskhub.config import Settings
from tests.conftest import PASSWORD, Api, client_for

pytestmark = pytest.mark.asyncio


class TestProblemDetails:
    async def test_unknown_route_404(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/api/v1/nothing-here", headers={"X-Request-ID": "abc-123"})
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {
            "type": "https://taskhub.dev/problems/not-found",
            "title": "Not Found",
            "status": 404,
            "detail": "No route matches /api/v1/nothing-here",
            "instance": "/api/v1/nothing-here",
            "request_id": "abc-123",
        }

    async def test_trailing_slash_is_404_not_a_redirect(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("slash@x.io")
        r = await client.get("/api/v1/tasks/", headers=h)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"

    async def test_method_not_allowed_405(self, client: httpx.AsyncClient) -> None:
        r = await client.put("/api/v1/auth/login", json={})
        assert r.status_code == 405
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 405
        assert "POST" in r.headers["allow"]

    async def test_malformed_json_400(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("j@x.io")
        r = await client.post(
            "/api/v1/tasks", content=b'{"title": "x",', headers={**h, "Content-Type": "application/json"}
        )
        assert r.status_code == 400
        assert r.json()["title"] == "Malformed JSON"
        assert "errors" not in r.json()

    async def test_validation_422_lists_fields(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/register", json={"email": "x@x.io"})
        assert r.status_code == 422
        body = r.json()
        assert body["type"] == "https://taskhub.dev/problems/validation-error"
        assert sorted(tuple(e["loc"]) for e in body["errors"]) == [("body", "name"), ("body", "password")]
        assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])

    async def test_wrong_content_type_415(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("ct@x.io")
        r = await client.post("/api/v1/tasks", content=b"title=x", headers={**h, "Content-Type": "text/plain"})
        assert r.status_code == 415
        assert r.headers["content-type"] == "application/problem+json"
        r = await client.post(
            "/api/v1/tasks", content=b'{"title":"x"}', headers={**h, "Content-Type": "application/json; charset=utf-8"}
        )
        assert r.status_code == 201

    async def test_json_to_the_oauth2_form_is_415_with_a_hint(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/token", json={"username": "a@x.io", "password": "pw"})
        assert r.status_code == 415
        assert "/api/v1/auth/login" in r.json()["detail"]

    async def test_unexpected_error_is_bare_500(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from taskhub.users import service

        async def boom(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("SELECT secret FROM internals /srv/app/x.py")

        monkeypatch.setattr(service, "create_user", boom)
        r = await client.post("/api/v1/auth/register", json={"email": "e@x.io", "password": PASSWORD, "name": "E"})
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert "SELECT" not in r.text and "/srv" not in r.text and "Traceback" not in r.text
        assert r.json()["request_id"] == r.headers["x-request-id"]


class TestBodyLimit:
    @pytest.fixture
    async def small(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = await app_factory(settings_factory(max_body_bytes=200))
        async with client_for(app) as c:
            yield c

    async def test_declared_length_over_limit_413(self, small: httpx.AsyncClient) -> None:
        api = Api(small)
        h = await api.user("big@x.io")
        r = await small.post("/api/v1/tasks", json={"title": "x", "description": "d" * 300}, headers=h)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert "200 bytes" in r.json()["detail"]
        assert (await small.get("/api/v1/tasks", headers=h)).json()["total"] == 0

    async def test_chunked_body_over_limit_413(self, small: httpx.AsyncClient) -> None:
        api = Api(small)
        h = await api.user("chunk@x.io")

        async def body() -> AsyncIterator[bytes]:
            yield b'{"title": "x", "description": "'
            for _ in range(10):
                yield b"d" * 50
            yield b'"}'

        r = await small.post("/api/v1/tasks", content=body(), headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 413
        assert (await small.get("/api/v1/tasks", headers=h)).json()["total"] == 0


class TestRequestIdAndGzip:
    async def test_request_id_echoed_or_generated(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/health", headers={"X-Request-ID": "trace.1:2-3"})).headers[
            "x-request-id"
        ] == "trace.1:2-3"
        generated = (await client.get("/health")).headers["x-request-id"]
        assert len(generated) == 32
        insane = (await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})).headers["x-request-id"]
        assert insane != "bad id\twith spaces" and len(insane) == 32

    async def test_api_responses_are_private(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("cc@x.io")
        assert (await client.get("/api/v1/tasks", headers=h)).headers["cache-control"] == "private, no-cache"
        tokens = await client.post("/api/v1/auth/login", json={"email": "cc@x.io", "password": PASSWORD})
        assert tokens.headers["cache-control"] == "no-store"

    async def test_gzip_only_over_1kib(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("gz@x.io")
        small = await client.get("/api/v1/tasks", headers={**h, "Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers
        for i in range(10):
            await api.task(h, title=f"task number {i}", description="x" * 100)
        big = await client.get("/api/v1/tasks", headers={**h, "Accept-Encoding": "gzip"})
        assert big.headers["content-encoding"] == "gzip"
        assert len(big.json()["items"]) == 10
        plain = await client.get("/api/v1/tasks", headers={**h, "Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers


class TestRateLimits:
    async def _app(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings], **kw: Any
    ) -> FastAPI:
        values: dict[str, Any] = {"rate_limit_enabled": True, **kw}
        app: FastAPI = await app_factory(settings_factory(**values))
        return app

    async def test_anonymous_limit_per_ip(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await self._app(app_factory, settings_factory, rate_limit_anon="3 per minute")
        async with client_for(app) as c:
            codes = [(await c.get("/api/v1/tasks")).status_code for _ in range(4)]
            assert codes == [401, 401, 401, 429]
            r = await c.get("/api/v1/tasks")
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["ratelimit-limit"] == "3"
            assert r.headers["ratelimit-remaining"] == "0"
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert 0 <= int(r.headers["ratelimit-reset"]) <= 60
            assert (await c.get("/health")).status_code == 200  # operations are not limited

    async def test_refresh_spends_the_ip_budget_only_when_it_fails(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await self._app(
            app_factory, settings_factory, rate_limit_auth="3 per minute", rate_limit_anon="1000 per minute"
        )
        async with client_for(app) as c:
            api = Api(c)
            await api.register("rl@x.io")
            await api.login("rl@x.io")  # 2 of 3 spent (register + login); sets the refresh cookie
            for _ in range(5):  # a dashboard reloading: one refresh per page load
                r = await c.post("/api/v1/auth/refresh")
                assert r.status_code == 200
            assert (await c.post("/api/v1/auth/refresh", json={"refresh_token": "guess"})).status_code == 401
            limited = await c.post("/api/v1/auth/refresh")  # budget spent by the failure
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1

    async def test_body_errors_carry_rate_limit_headers(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await self._app(app_factory, settings_factory, rate_limit_anon="5 per minute")
        async with client_for(app) as c:
            r = await c.post("/api/v1/auth/login", content=b"x", headers={"Content-Type": "text/plain"})
            assert r.status_code == 415
            assert r.headers["ratelimit-limit"] == "5"

    async def test_headers_on_allowed_responses(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await self._app(app_factory, settings_factory, rate_limit_anon="5 per minute")
        async with client_for(app) as c:
            r = await c.get("/api/v1/tasks")
            assert (r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]) == ("5", "4")

    async def test_login_limited_per_account_and_per_ip(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await self._app(
            app_factory, settings_factory, rate_limit_auth="3 per minute", rate_limit_anon="1000 per minute"
        )
        async with client_for(app) as c:
            bad = {"email": "who@x.io", "password": "wrong password"}
            codes = [(await c.post("/api/v1/auth/login", json=bad)).status_code for _ in range(4)]
            assert codes == [401, 401, 401, 429]
        # per account: the same account from different IPs (via a trusted proxy) is still limited
        app2 = await self._app(
            app_factory,
            settings_factory,
            rate_limit_auth="2 per minute",
            rate_limit_anon="1000 per minute",
            trusted_proxies=["127.0.0.0/8"],
        )
        transport = httpx.ASGITransport(app=app2, raise_app_exceptions=False, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            codes = []
            for i in range(3):
                r = await c.post(
                    "/api/v1/auth/login",
                    json={"email": "acct@x.io", "password": "wrong pw!"},
                    headers={"X-Forwarded-For": f"203.0.113.{i}"},
                )
                codes.append(r.status_code)
            assert codes == [401, 401, 429]

    async def test_login_headers_show_the_account_budget(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await self._app(
            app_factory,
            settings_factory,
            rate_limit_auth="3 per minute",
            rate_limit_anon="1000 per minute",
            trusted_proxies=["127.0.0.1/32"],
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            remaining = []
            for i in range(2):
                r = await c.post(
                    "/api/v1/auth/login",
                    json={"email": "acct@x.io", "password": "wrong one!"},
                    headers={"X-Forwarded-For": f"203.0.113.{i}"},
                )
                remaining.append(r.headers["ratelimit-remaining"])
        assert remaining == ["2", "1"]  # the account's budget, not each fresh IP's

    async def test_concurrent_bad_refreshes_get_no_more_than_the_budget(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        """Guessing refresh tokens in one burst: the budget is checked and spent atomically."""
        app = await self._app(
            app_factory, settings_factory, rate_limit_auth="3 per minute", rate_limit_anon="1000 per minute"
        )
        async with client_for(app) as c:
            results = await asyncio.gather(
                *[c.post("/api/v1/auth/refresh", json={"refresh_token": f"guess-{i}"}) for i in range(12)]
            )
        codes = [r.status_code for r in results]
        assert codes.count(401) <= 3, codes
        assert codes.count(429) >= 9

    async def test_user_limit_keyed_by_user(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await self._app(
            app_factory, settings_factory, rate_limit_user="3 per minute", rate_limit_anon="1000 per minute"
        )
        async with client_for(app) as c:
            api = Api(c)
            h1 = await api.user("r1@x.io")
            h2 = await api.user("r2@x.io")
            codes = [(await c.get("/api/v1/users/me", headers=h1)).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            assert (await c.get("/api/v1/users/me", headers=h2)).status_code == 200

    async def test_forwarded_for_only_from_trusted_proxy(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        # Untrusted peer: X-Forwarded-For is ignored, so rotating it does not escape the limit.
        app = await self._app(app_factory, settings_factory, rate_limit_anon="2 per minute")
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("198.51.100.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            codes = [
                (await c.get("/api/v1/tasks", headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code for i in range(3)
            ]
            assert codes == [401, 401, 429]
        # Trusted proxy: each forwarded client has its own budget.
        app2 = await self._app(
            app_factory, settings_factory, rate_limit_anon="2 per minute", trusted_proxies=["198.51.100.0/24"]
        )
        transport2 = httpx.ASGITransport(app=app2, raise_app_exceptions=False, client=("198.51.100.7", 1234))
        async with httpx.AsyncClient(transport=transport2, base_url="http://t") as c:
            codes = [
                (await c.get("/api/v1/tasks", headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code for i in range(3)
            ]
            assert codes == [401, 401, 401]
            codes = [
                (await c.get("/api/v1/tasks", headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.9"})).status_code
                for _ in range(3)
            ]
            assert codes == [401, 401, 429]

    async def test_garbage_forwarded_for_makes_no_new_buckets(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        """A trusted proxy passing on an unparsable X-Forwarded-For: the proxy's own address is the key."""
        app = await self._app(
            app_factory, settings_factory, rate_limit_anon="2 per minute", trusted_proxies=["127.0.0.1/32"]
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            codes = [
                (await c.get("/api/v1/tasks", headers={"X-Forwarded-For": f"garbage{i}"})).status_code for i in range(3)
            ]
        assert codes == [401, 401, 429]
