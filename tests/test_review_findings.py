"""Regression tests for the findings of the adversarial review (one class per finding)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskhub.config import Settings
from tests.conftest import PASSWORD, Api, client_for
from tests.helpers import outbox_events

pytestmark = pytest.mark.asyncio
H = dict[str, str]


class TestDeleteRespectsVersion:
    async def test_racing_patch_and_deletes(self, app: FastAPI, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("race@x.io")
        for _ in range(5):
            task = await api.task(h)
            url = f"/api/v1/tasks/{task['id']}"
            patch, *deletes = await asyncio.gather(
                client.patch(url, json={"title": "p"}, headers={**h, "If-Match": '"1"'}),
                client.delete(url, headers={**h, "If-Match": '"1"'}),
                client.delete(url, headers={**h, "If-Match": '"1"'}),
            )
            delete_codes = sorted(d.status_code for d in deletes)
            assert delete_codes.count(204) <= 1
            if patch.status_code == 200:
                assert 204 not in delete_codes, "a delete asserting version 1 removed version 2"
            events = [e for e in await outbox_events(app) if e["task_id"] == task["id"]]
            assert [e["type"] for e in events].count("task.deleted") == delete_codes.count(204)
            versions = [e["version"] for e in events]
            assert versions == sorted(versions)


class TestBadInputIsNever500:
    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": "a\u0000b"}, ["body", "title"]),
            ({"title": "t", "description": "a\u0000"}, ["body", "description"]),
            ({"title": "t", "tags": ["a\u0000"]}, ["body", "tags", 0]),  # the item is named
            ({"title": "t", "due_date": "0001-01-01T00:00:00+05:00"}, ["body", "due_date"]),
            ({"title": "t", "due_date": "9999-12-31T23:59:59-05:00"}, ["body", "due_date"]),
            ({"title": "t", "due_date": 1700000000}, ["body", "due_date"]),
        ],
    )
    async def test_task_bodies(self, api: Api, client: httpx.AsyncClient, body: dict[str, Any], loc: list[str]) -> None:
        h = await api.user("nul@x.io")
        r = await client.post("/api/v1/tasks", json=body, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == loc

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("q=a%00b", "q"),
            ("tag=a%00b", "tag"),
            ("due_before=0001-01-01T00:00:00%2B05:00", "due_before"),
            ("due_after=9999-12-31T23:59:59-05:00", "due_after"),
            ("page=10000000000000000000", "page"),
        ],
    )
    async def test_task_queries(self, api: Api, client: httpx.AsyncClient, query: str, field: str) -> None:
        h = await api.user("q@x.io")
        r = await client.get(f"/api/v1/tasks?{query}", headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["query", field]

    @pytest.mark.parametrize(
        ("sort", "key"),
        [
            ("priority", {"v": 1000000000000, "id": "01900000-0000-7000-8000-000000000000"}),
            ("-created_at", {"v": "0001-01-01T00:00:00+05:00", "id": "01900000-0000-7000-8000-000000000000"}),
        ],
    )
    async def test_tampered_cursors(self, api: Api, client: httpx.AsyncClient, sort: str, key: dict[str, Any]) -> None:
        h = await api.user("cur@x.io")
        cursor = base64.urlsafe_b64encode(json.dumps({"s": sort, "k": key}).encode()).decode().rstrip("=")
        r = await client.get(f"/api/v1/tasks?sort={sort}&cursor={cursor}", headers=h)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["query", "cursor"]

    @pytest.mark.parametrize(
        ("path", "query", "field"),
        [
            ("/api/v1/admin/users", "page=10000000000000000000", "page"),
            ("/api/v1/admin/users", "q=a%00", "q"),
            ("/api/v1/admin/tasks", "q=a%00", "q"),
            ("/api/v1/admin/tasks", "due_after=0001-01-01T00:00:00%2B05:00", "due_after"),
            # a cursor whose created_at overflows when converted to UTC
            (
                "/api/v1/admin/users",
                "cursor=eyJzIjoiLWNyZWF0ZWRfYXQiLCJrIjp7InYiOiIwMDAxLTAxLTAxVDAwOjAwOjAwKzA1OjAwIiwiaWQiOiIwMTkwMDAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDAifX0",
                "cursor",
            ),
        ],
    )
    async def test_admin_queries(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient, path: str, query: str, field: str
    ) -> None:
        from tests.helpers import promote_to_admin

        await api.register("adm@x.io")
        await promote_to_admin(app, "adm@x.io")
        h = {"Authorization": f"Bearer {(await api.login('adm@x.io'))['access_token']}"}
        r = await client.get(f"{path}?{query}", headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["query", field]

    async def test_accounts(self, api: Api, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/login", json={"email": "a\u0000@x.io", "password": "whatever1"})
        assert r.status_code == 401
        r = await client.post("/api/v1/auth/token", data={"username": "a\u0000@x.io", "password": "whatever1"})
        assert r.status_code == 401
        r = await client.post(
            "/api/v1/auth/register", json={"email": "n@x.io", "password": PASSWORD, "name": "a\u0000b"}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "name"]
        long_email = "\ufdfa" * 20 + "@example.com"  # NFKC expands each character to 18
        r = await client.post("/api/v1/auth/register", json={"email": long_email, "password": PASSWORD, "name": "L"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "email"]
        h = await api.user("me@x.io")
        for body, loc in (({"name": "a\u0000"}, "name"), ({"name": None}, "name"), ({"email": None}, "email")):
            r = await client.patch("/api/v1/users/me", json=body, headers=h)
            assert r.status_code == 422, body
            assert r.json()["errors"][0]["loc"] == ["body", loc]


class TestSessionsEndWithTheirFamily:
    async def test_logout_without_refresh_token_revokes_the_family(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("fam@x.io")
        tokens = await api.login("fam@x.io")
        client.cookies.clear()  # a non-browser client: no cookie either
        h = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.post("/api/v1/auth/logout", headers=h)).status_code == 204
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 401

    async def test_reuse_detection_ends_access_tokens_of_the_family(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("theft@x.io")
        first = await api.login("theft@x.io")
        other = await api.login("theft@x.io")
        second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        for token in (first["access_token"], second["access_token"]):  # prime the read-path auth cache
            assert (
                await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            ).status_code == 200
        assert (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        ).status_code == 401
        for token in (first["access_token"], second["access_token"]):
            r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
        r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {other['access_token']}"})
        assert r.status_code == 200  # another login is another family


class TestEtagsAndRoutes:
    async def test_weak_etag_never_satisfies_if_match(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("weak@x.io")
        task = await api.task(h)
        url = f"/api/v1/tasks/{task['id']}"
        assert (await client.patch(url, json={"title": "x"}, headers={**h, "If-Match": 'W/"1"'})).status_code == 412
        assert (await client.patch(url, json={"title": "x"}, headers={**h, "If-Match": '"0", "1"'})).status_code == 200
        assert (await client.get(url, headers={**h, "If-None-Match": 'W/"2"'})).status_code == 304  # weak match

    async def test_trailing_slash_is_404_not_a_redirect(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("slash@x.io")
        r = await client.get("/api/v1/tasks/", headers=h)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"

    async def test_overdue_pages_are_not_cached(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("od@x.io")
        for _ in range(2):
            assert (await client.get("/api/v1/tasks?overdue=true", headers=h)).headers["x-cache"] == "MISS"


class TestRateLimitDetails:
    async def test_garbage_forwarded_for_does_not_make_new_buckets(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(
            settings_factory(rate_limit_enabled=True, rate_limit_anon="2 per minute", trusted_proxies=["127.0.0.1/32"])
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            codes = [
                (await c.get("/api/v1/tasks", headers={"X-Forwarded-For": f"garbage{i}"})).status_code for i in range(3)
            ]
        assert codes == [401, 401, 429]

    async def test_account_budget_shows_in_headers(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(
            settings_factory(
                rate_limit_enabled=True,
                rate_limit_auth="3 per minute",
                rate_limit_anon="1000 per minute",
                trusted_proxies=["127.0.0.1/32"],
            )
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


class TestAuthCache:
    async def test_reads_and_task_writes_reuse_the_decision_and_a_profile_change_drops_it(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient
    ) -> None:
        from tests.helpers import ctx_of

        cache = ctx_of(app).auth_cache
        h = await api.user("ac@x.io")
        hits = cache.hits
        for _ in range(3):
            assert (await client.get("/api/v1/users/me", headers=h)).status_code == 200
        assert cache.hits == hits + 2  # first read loads, the next two reuse
        await api.task(h, title="task writes keep the cache")
        assert (await client.get("/api/v1/tasks", headers=h)).status_code == 200
        assert cache.hits == hits + 4
        r = await client.patch("/api/v1/users/me", json={"name": "Renamed"}, headers=h)
        assert r.status_code == 200
        assert (await client.get("/api/v1/users/me", headers=h)).json()["name"] == "Renamed"

    async def test_failed_write_keeps_nothing_stale(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("ac2@x.io")
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 200
        bad = await client.post(
            "/api/v1/users/me/password",
            json={"current_password": "wrong!!!", "new_password": "another good one"},
            headers=h,
        )
        assert bad.status_code == 401
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 200
        ok = await client.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "another good one"},
            headers=h,
        )
        assert ok.status_code == 204
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 401

    async def test_not_used_with_several_workers(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        from taskhub.auth.cache import NullAuthCache
        from tests.helpers import ctx_of

        app = await app_factory(settings_factory(workers=2))
        assert isinstance(ctx_of(app).auth_cache, NullAuthCache)


class TestRefreshGuessing:
    async def test_a_concurrent_burst_of_bad_refreshes_gets_no_more_than_the_budget(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(
            settings_factory(rate_limit_enabled=True, rate_limit_auth="3 per minute", rate_limit_anon="1000 per minute")
        )
        async with client_for(app) as c:
            results = await asyncio.gather(
                *[c.post("/api/v1/auth/refresh", json={"refresh_token": f"guess-{i}"}) for i in range(12)]
            )
        codes = [r.status_code for r in results]
        assert codes.count(401) <= 3, codes
        assert codes.count(429) >= 9
