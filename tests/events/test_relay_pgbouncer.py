"""The relay behind PgBouncer in transaction mode: its leader lock is a session advisory lock, so it
connects through ``TASKHUB_RELAY_DATABASE_URL`` (directly to the primary) and, without one, stands by
with the reason in its status while writes go on and events wait in the outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import make_url

from taskhub.config import Settings
from taskhub.events.models import OutboxEvent
from taskhub.events.runtime import EventsRuntime
from tests.conftest import Api, Backend, client_for
from tests.pgbouncer import PgBouncer

pytestmark = [pytest.mark.integration, pytest.mark.postgres_only]


def relay_status(app: FastAPI) -> Any:
    events: EventsRuntime = app.state.events
    assert events.relay is not None
    return events.relay.status


async def unsent(app: FastAPI) -> int:
    async with app.state.ctx.db.unit_of_work(readonly=True) as session:
        rows = await session.execute(select(OutboxEvent.id).where(OutboxEvent.sent_at.is_(None)))
        return len(rows.all())


def bouncer_url(backend: Backend, bouncer: PgBouncer) -> str:
    name = make_url(backend.url).database
    assert name is not None
    return bouncer.url(name)


async def test_without_a_direct_url_the_relay_stands_by_and_writes_go_on(
    backend: Backend,
    pgbouncer: PgBouncer,
    app_factory: Callable[..., Any],
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(database_url=bouncer_url(backend, pgbouncer), database_pgbouncer=True)
    assert settings.relay_database_url is None
    app = await app_factory(settings)
    async with client_for(app) as client:
        api = Api(client)
        h = await api.user("bouncer@x.io")
        await api.task(h, title="waits in the outbox")
        deadline = time.monotonic() + 5
        while relay_status(app).last_error is None:
            assert time.monotonic() < deadline, "the relay never said why it stands by"
            await asyncio.sleep(0.05)
        status = relay_status(app)
        assert status.leader is False
        assert status.last_error == (
            "TASKHUB_RELAY_DATABASE_URL (a direct URL of the primary) is required behind PgBouncer"
        )
        assert await unsent(app) == 1
        ready = (await client.get("/ready")).json()
        assert ready["checks"]["broker"]["relay_leader"] is False
        assert ready["checks"]["broker"]["relay_error"] == status.last_error


async def test_with_a_direct_url_the_relay_delivers(
    backend: Backend,
    pgbouncer: PgBouncer,
    app_factory: Callable[..., Any],
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        database_url=bouncer_url(backend, pgbouncer), database_pgbouncer=True, relay_database_url=backend.url
    )
    app = await app_factory(settings)
    async with client_for(app) as client:
        api = Api(client)
        h = await api.user("direct@x.io")
        for i in range(5):
            await api.task(h, title=f"delivered {i}")
        deadline = time.monotonic() + 10
        while await unsent(app):
            assert time.monotonic() < deadline, f"{await unsent(app)} events still unsent"
            await asyncio.sleep(0.05)
        assert relay_status(app).leader is True
