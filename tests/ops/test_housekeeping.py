"""Housekeeping deletes exactly the rows that can no longer matter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from taskhub.auth.models import RefreshToken, RevokedAccessToken
from taskhub.config import Settings
from taskhub.core.timeutil import utcnow
from taskhub.ops.housekeeping import purge_once, run_periodically
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
    """Time is injected (``purge_once(now=...)``), not waited for."""
    settings = settings_factory(access_token_ttl=60, refresh_token_ttl=120, idempotency_ttl=60, purge_interval=0)
    app = await app_factory(settings)
    start = utcnow()
    async with client_for(app) as client:
        api = Api(client)
        old = await api.user("old@x.io")  # one refresh token, expiring at start + 120 s
        await client.post("/api/v1/tasks", json={"title": "t"}, headers={**old, "Idempotency-Key": "k1"})
        assert (await client.post("/api/v1/auth/logout", headers=old)).status_code == 204
        assert await _count(app, RevokedAccessToken) == 1
        assert await _count(app, IdempotencyKey) == 1
        assert await purge_once(ctx_of(app).db, settings, now=start + timedelta(seconds=30)) == {
            "tokens": 0,
            "idempotency_keys": 0,
            "outbox_events": 0,
            "processed_events": 0,
        }
        # +100 s: the denylist entry (token expired at +60) and the idempotency record (TTL 60) go;
        # the refresh token (expires at +120, kept one access lifetime longer) stays.
        deleted = await purge_once(ctx_of(app).db, settings, now=start + timedelta(seconds=100))
        assert deleted == {"tokens": 1, "idempotency_keys": 1, "outbox_events": 0, "processed_events": 0}
        assert await _count(app, RevokedAccessToken) == 0
        assert await _count(app, IdempotencyKey) == 0
        assert await _count(app, RefreshToken) == 1
        deleted = await purge_once(ctx_of(app).db, settings, now=start + timedelta(seconds=185))
        assert deleted == {"tokens": 1, "idempotency_keys": 0, "outbox_events": 0, "processed_events": 0}
        assert await _count(app, RefreshToken) == 0


async def test_the_periodic_purge_runs_on_its_interval_with_its_clock(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(idempotency_ttl=60, purge_interval=3600)
    app = await app_factory(settings.model_copy(update={"purge_interval": 0}))
    async with client_for(app) as client:
        h = await Api(client).user("periodic@x.io")
        await client.post("/api/v1/tasks", json={"title": "t"}, headers={**h, "Idempotency-Key": "k"})
    slept: list[float] = []
    later = utcnow() + timedelta(hours=2)

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            raise asyncio.CancelledError  # stop after one full round

    with pytest.raises(asyncio.CancelledError):
        await run_periodically(ctx_of(app).db, settings, clock=lambda: later, sleep=fake_sleep)
    assert slept == [3600, 3600]
    assert await _count(app, IdempotencyKey) == 0


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


async def test_sent_events_are_kept_for_the_retention_window_and_unsent_ones_forever(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    from taskhub.events.models import OutboxEvent, ProcessedEvent

    settings = settings_factory(outbox_retention=600, purge_interval=0)
    app = await app_factory(settings)
    async with client_for(app) as client:
        h = await Api(client).user("retention@x.io")
        await client.post("/api/v1/tasks", json={"title": "sent"}, headers=h)
        for _ in range(200):  # the in-process relay applies it to both consumers, then marks it sent
            if await _count(app, ProcessedEvent) == 2 and await _count_sent(app) == 1:
                break
            await asyncio.sleep(0.05)
        assert await _stop_relay(app)
        await client.post("/api/v1/tasks", json={"title": "never sent"}, headers=h)
    start = utcnow()
    assert await purge_once(ctx_of(app).db, settings, now=start + timedelta(seconds=500)) == {
        "tokens": 0,
        "idempotency_keys": 0,
        "outbox_events": 0,
        "processed_events": 0,
    }
    deleted = await purge_once(ctx_of(app).db, settings, now=start + timedelta(seconds=700))
    assert deleted == {"tokens": 0, "idempotency_keys": 0, "outbox_events": 1, "processed_events": 2}
    assert await _count(app, OutboxEvent) == 1  # the unsent one stays, however old
    assert await _count_sent(app) == 0


async def _count_sent(app: Any) -> int:
    from taskhub.events.models import OutboxEvent

    async with ctx_of(app).db.unit_of_work(readonly=True) as session:
        stmt = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.sent_at.is_not(None))
        return int((await session.execute(stmt)).scalar_one())


async def _stop_relay(app: Any) -> bool:
    await app.state.events.stop()
    return True
