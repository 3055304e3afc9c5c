"""Housekeeping deletes exactly the rows that can no longer matter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from taskhub.auth.models import RefreshToken, RevokedAccessToken
from taskhub.config import Settings
from taskhub.ops.housekeeping import purge_once
from taskhub.tasks.models import IdempotencyKey
from tests.conftest import Api, client_for
from tests.helpers import ctx_of

pytestmark = pytest.mark.asyncio


async def _count(app: Any, model: Any) -> int:
    async with ctx_of(app).db.unit_of_work(readonly=True) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_purge_deletes_only_expired_rows(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(access_token_ttl=1, refresh_token_ttl=1, idempotency_ttl=1, purge_interval=0)
    app = await app_factory(settings)
    async with client_for(app) as client:
        api = Api(client)
        old = await api.user("old@x.io")
        await client.post("/api/v1/tasks", json={"title": "t"}, headers={**old, "Idempotency-Key": "k1"})
        assert (await client.post("/api/v1/auth/logout", headers=old)).status_code == 204
        await asyncio.sleep(2.2)
        fresh = await api.login("old@x.io")  # a live refresh token that must survive
        assert await _count(app, RevokedAccessToken) == 1
        assert await _count(app, IdempotencyKey) == 1
        deleted = await purge_once(ctx_of(app).db, settings)
        assert deleted["idempotency_keys"] == 1
        assert deleted["tokens"] == 2  # the expired denylist entry and the first login's refresh token
        # (refresh tokens are kept one access-token lifetime past expiry: 1 s here)
        assert await _count(app, RevokedAccessToken) == 0
        assert await _count(app, IdempotencyKey) == 0
        assert await _count(app, RefreshToken) == 1
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert r.status_code == 200


async def test_revoked_family_outlives_its_refresh_tokens_expiry(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    """A refresh lifetime shorter than the access lifetime must not let a purge revive a revoked session."""
    settings = settings_factory(access_token_ttl=60, refresh_token_ttl=1, purge_interval=0)
    app = await app_factory(settings)
    async with client_for(app) as client:
        api = Api(client)
        await api.register("sess@x.io")
        first = await api.login("sess@x.io")
        rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        h = {"Authorization": f"Bearer {first['access_token']}"}
        r = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {rotated['access_token']}"})
        assert r.status_code == 204
        await asyncio.sleep(1.5)
        await purge_once(ctx_of(app).db, settings)
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 401


async def test_purge_keeps_used_tokens_of_live_families(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    """A stolen token refreshed again and again keeps its family alive; the victim's old token must
    still be detected as reused after a purge."""
    settings = settings_factory(access_token_ttl=1, refresh_token_ttl=2, purge_interval=0)
    app = await app_factory(settings)
    async with client_for(app) as client:
        api = Api(client)
        await api.register("victim@x.io")
        first = await api.login("victim@x.io")
        await asyncio.sleep(1.5)
        second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        await asyncio.sleep(1.7)  # the first token expired > 1 access lifetime ago; the second still lives
        await purge_once(ctx_of(app).db, settings)
        replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert replay.status_code == 401
        assert replay.json()["title"] == "Refresh token reuse detected"
        after = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert after.status_code == 401
