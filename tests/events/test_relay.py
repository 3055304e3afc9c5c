"""The outbox relay against the real RabbitMQ (SQLite and PostgreSQL): exact payloads and
routing keys, publication after confirm only, order per task through a broker outage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from taskhub.analytics.models import DailyTaskStats
from taskhub.config import Settings
from taskhub.context import AppContext
from taskhub.events.broker import event_message
from taskhub.events.models import OutboxEvent
from taskhub.worker.consumer import Worker
from tests.conftest import Api, client_for
from tests.events.conftest import BrokerNames, TcpProxy, payload
from tests.helpers import outbox_events

pytestmark = pytest.mark.integration


def ctx_of(app: FastAPI) -> AppContext:
    ctx: AppContext = app.state.ctx
    return ctx


async def sent_state(app: FastAPI) -> list[tuple[int, bool, int | None]]:
    """``(id, sent, seq)`` of every outbox row, by id."""
    async with ctx_of(app).db.unit_of_work(readonly=True) as session:
        rows = await session.execute(
            select(OutboxEvent.id, OutboxEvent.sent_at, OutboxEvent.seq).order_by(OutboxEvent.id)
        )
        return [(i, s is not None, q) for i, s, q in rows]


async def test_each_event_is_published_with_its_exact_payload_and_routing_key(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings], broker_names: BrokerNames
) -> None:
    probe = await broker_names.bind_queue()
    app = await app_factory(settings_factory(**broker_names.settings()))
    async with client_for(app) as client:
        api = Api(client)
        h = await api.user("relay@x.io")
        task = await api.task(h, title="publish me", tags=["a"])
        assert (
            await client.patch(f"/api/v1/tasks/{task['id']}", json={"priority": "high"}, headers=h)
        ).status_code == 200
        assert (
            await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=h)
        ).status_code == 200
        assert (await client.delete(f"/api/v1/tasks/{task['id']}", headers=h)).status_code == 204
        messages = await broker_names.drain(probe, 4)
        outbox = await outbox_events(app)
        ready = (await client.get("/ready")).json()
    assert [m.routing_key for m in messages] == ["task.created", "task.updated", "task.completed", "task.deleted"]
    assert [payload(m) for m in messages] == outbox  # byte-for-byte the outbox payloads, in order
    assert [m.message_id for m in messages] == [e["event_id"] for e in outbox]
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in messages)
    assert all(m.content_type == "application/json" for m in messages)
    assert all(m.exchange == broker_names.exchange for m in messages)
    assert payload(messages[0])["changes"]["tags"] == ["a"]
    assert [e["version"] for e in outbox] == [1, 2, 3, 3]
    assert [(sent, seq) for _, sent, seq in await sent_state(app)] == [(True, 1), (True, 2), (True, 3), (True, 4)]
    assert ready["status"] == "ok"
    assert ready["checks"]["broker"]["ok"] is True
    assert ready["checks"]["broker"]["backend"] == "rabbitmq"
    assert ready["checks"]["broker"]["outbox"] == {"unsent": 0, "lag_s": 0.0}
    assert ready["checks"]["broker"]["relay_leader"] is True


async def _wait_for(predicate: Callable[[], Any], within: float, step: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(step)


async def test_a_broker_outage_never_fails_a_write_and_every_event_arrives_once_in_order(
    app_factory: Callable[..., Any],
    settings_factory: Callable[..., Settings],
    broker_names: BrokerNames,
    amqp_proxy: TcpProxy,
) -> None:
    """The broker goes away (a TCP proxy cut) for ~8 s: writes keep answering 2xx, /ready says
    the broker is down and shows the backlog; once it is back every event arrives, in order per
    task, once; a worker applies each exactly once (counters match)."""
    probe = await broker_names.bind_queue()
    settings = settings_factory(**broker_names.settings(amqp_proxy.url(broker_names.url)), worker_retry_delays=[0.2])
    app = await app_factory(settings)
    worker = Worker(ctx_of(app).db, settings.model_copy(update={"broker_url": broker_names.url}))
    await worker.start()
    try:
        async with client_for(app) as client:
            api = Api(client)
            h = await api.user("outage@x.io")
            before = await api.task(h, title="before")
            await broker_names.drain(probe, 1)

            await amqp_proxy.cut()
            tasks = [await api.task(h, title=f"t{i}") for i in range(5)]
            for t in tasks:
                r = await client.patch(f"/api/v1/tasks/{t['id']}", json={"status": "in_progress"}, headers=h)
                assert r.status_code == 200
                r = await client.patch(f"/api/v1/tasks/{t['id']}", json={"status": "done"}, headers=h)
                assert r.status_code == 200
            assert (await client.delete(f"/api/v1/tasks/{tasks[0]['id']}", headers=h)).status_code == 204
            await asyncio.sleep(2)
            ready = await client.get("/ready")
            assert ready.status_code == 200  # the broker is reported, not required
            broker = ready.json()["checks"]["broker"]
            assert broker["ok"] is False
            assert broker["outbox"]["unsent"] == 16
            assert broker["outbox"]["lag_s"] >= 2
            await asyncio.sleep(6)
            assert await probe.get(no_ack=True, fail=False) is None
            await amqp_proxy.restore()

            messages = await broker_names.drain(probe, 16, within=30)
            outbox = await outbox_events(app)

        async def counted() -> bool:
            async with ctx_of(app).db.unit_of_work(readonly=True) as session:
                stmt = select(func.sum(DailyTaskStats.created), func.sum(DailyTaskStats.completed))
                row = (await session.execute(stmt)).one()
            return tuple(row) == (6, 5)

        await _wait_for(counted, within=20)
        assert worker.applied == 2 * 17  # each event once per consumer (notifications, analytics)
        # The broker delivers at least once: the same event again changes nothing.
        exchange = await broker_names.channel.get_exchange(broker_names.exchange)
        completed = next(e for e in outbox if e["type"] == "task.completed")
        await exchange.publish(event_message(completed), routing_key="task.completed")
        await broker_names.drain(probe, 1)
        await asyncio.sleep(1)
        assert worker.applied == 2 * 17
        assert await counted()
    finally:
        await worker.stop()
    events = [payload(m) for m in messages]
    assert len(events) == 16
    assert len({e["event_id"] for e in events}) == 16
    assert sorted(e["event_id"] for e in events) == sorted(e["event_id"] for e in outbox[1:])
    for t in tasks:
        mine = [(e["type"], e["version"]) for e in events if e["task_id"] == t["id"]]
        expected = [("task.created", 1), ("task.updated", 2), ("task.completed", 3)]
        assert mine == ([*expected, ("task.deleted", 3)] if t is tasks[0] else expected)
    assert before["id"] not in {e["task_id"] for e in events}
