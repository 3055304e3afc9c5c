"""The auth-decision cache: reads reuse a token's decision; the services that change authentication
state invalidate it, per user, whatever URL made the change (issue 8: data, not URLs); several
workers do without it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from taskhub.auth.cache import MemoryAuthCache, NullAuthCache
from taskhub.config import Settings
from taskhub.users.models import User
from tests.conftest import PASSWORD, Api
from tests.helpers import ctx_of, promote_to_admin


async def _warm(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for _ in range(2):  # the first read loads the decision, the second is served from the cache
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200


class TestReuse:
    async def test_reads_and_task_writes_reuse_the_decision_and_a_profile_change_drops_it(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient
    ) -> None:
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

    async def test_a_failed_password_change_keeps_the_cached_session_a_successful_one_ends_it(
        self, api: Api, client: httpx.AsyncClient
    ) -> None:
        h = await api.user("ac2@x.io")
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 200  # cached now
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

    async def test_off_with_several_workers(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        """An in-process cache cannot be invalidated from another worker process, so there is none."""
        app = await app_factory(settings_factory(workers=2))
        assert isinstance(ctx_of(app).auth_cache, NullAuthCache)


class TestInvalidationByService:
    async def test_deactivation_by_an_admin_ends_a_cached_session_at_once(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient
    ) -> None:
        admin = await api.user("boss@x.io")
        await promote_to_admin(app, "boss@x.io")
        victim = await api.user("victim@x.io")
        bystander = await api.user("bystander@x.io")
        await _warm(client, victim)
        await _warm(client, bystander)
        victim_id = (await client.get("/api/v1/users/me", headers=victim)).json()["id"]
        cache = ctx_of(app).auth_cache
        r = await client.patch(f"/api/v1/admin/users/{victim_id}", json={"is_active": False}, headers=admin)
        assert r.status_code == 200
        assert (await client.get("/api/v1/users/me", headers=victim)).status_code == 401
        hits = cache.hits
        assert (await client.get("/api/v1/users/me", headers=bystander)).status_code == 200
        assert cache.hits == hits + 1  # another user's decision survives the change

    async def test_logout_ends_the_cached_token(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("leaver@x.io")
        await _warm(client, h)
        assert (await client.post("/api/v1/auth/logout", headers=h)).status_code == 204
        assert (await client.get("/api/v1/tasks", headers=h)).status_code == 401

    async def test_refresh_reuse_ends_the_familys_cached_tokens(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("stolen@x.io")
        first = await api.login("stolen@x.io")
        rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        h = {"Authorization": f"Bearer {rotated['access_token']}"}
        await _warm(client, h)
        reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 401

    async def test_password_change_and_deletion_end_cached_tokens(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("pw@x.io")
        other = await api.login("pw@x.io")
        h2 = {"Authorization": f"Bearer {other['access_token']}"}
        await _warm(client, h2)
        r = await client.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "a brand new secret"},
            headers=h,
        )
        assert r.status_code == 204
        assert (await client.get("/api/v1/users/me", headers=h2)).status_code == 401

        g = await api.user("gone@x.io")
        g2 = {"Authorization": f"Bearer {(await api.login('gone@x.io'))['access_token']}"}
        await _warm(client, g2)
        r = await client.request("DELETE", "/api/v1/users/me", json={"current_password": PASSWORD}, headers=g)
        assert r.status_code == 204
        assert (await client.get("/api/v1/users/me", headers=g2)).status_code == 401


class TestGenerationRule:
    async def test_a_decision_read_before_a_change_is_never_stored(self) -> None:
        cache = MemoryAuthCache()
        user = User(id=uuid.uuid4(), email="a@x.io", email_normalized="a@x.io", name="A", role="user")
        before = await cache.lookup("jti-1", user.id)
        await cache.invalidate(user.id)  # a change commits while the reader was still reading
        cache.put("jti-1", user, before.stamp)
        assert (await cache.lookup("jti-1", user.id)).user is None
        now = await cache.lookup("jti-1", user.id)
        cache.put("jti-1", user, now.stamp)
        assert (await cache.lookup("jti-1", user.id)).user is not None
        assert (await cache.lookup("jti-1", uuid.uuid4())).user is None  # a token is only its own subject's
