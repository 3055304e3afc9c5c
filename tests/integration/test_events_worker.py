"""Relays and workers as real processes on PostgreSQL and RabbitMQ: a worker killed mid-handler,
two relays and two workers over 1,000 events, a poison message through the DLQ and back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiormq
import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import JWT_SECRET
from tests.events.conftest import BrokerNames, payload
from tests.integration.conftest import TASKHUB, ServerProcess, seed_user

pytestmark = pytest.mark.integration


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def sql(url: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn(url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def scalar(url: str, query: str, *args: Any) -> Any:
    return (await sql(url, query, *args))[0][0]


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def count_is(url: str, query: str, expected: Any, *args: Any) -> bool:
    return bool(await scalar(url, query, *args) == expected)


@pytest.fixture
def pg(pg_url: str) -> str:
    """The module's database, emptied for this test."""

    async def empty() -> None:
        conn = await asyncpg.connect(dsn(pg_url))
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
            await conn.execute("TRUNCATE " + ", ".join(f'"{t[0]}"' for t in tables) + " RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(empty())
    return pg_url


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``taskhub worker`` processes; all stopped (SIGTERM, then SIGKILL) afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(procs)}.log").open("wb")
        full_env = {
            **os.environ,
            "TASKHUB_JWT_SECRET": JWT_SECRET,
            "TASKHUB_LOG_LEVEL": "INFO",
            "TASKHUB_METRICS_PORT": "0",  # several workers on one machine: no metrics port to share
            **env,
        }
        proc = subprocess.Popen([TASKHUB, "worker"], env=full_env, stdout=log, stderr=log)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def login(c: httpx.Client, email: str, password: str) -> dict[str, str]:
    r = c.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKHUB, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


async def test_a_worker_killed_mid_handler_gets_its_message_redelivered_and_applied_once(
    pg: str, broker_names: BrokerNames, start_server: Callable[..., ServerProcess], start_worker: Callable[..., Any]
) -> None:
    email, password = seed_user(pg)
    env = {"TASKHUB_DATABASE_URL": pg, **broker_names.env()}
    server = start_server(**env)
    first = start_worker(**env)
    with server.client() as c:
        h = login(c, email, password)
        task = c.post("/api/v1/tasks", json={"title": "kill me"}, headers=h).json()
        # Let the worker apply task.created, then hold the notifications table so that the
        # handler of task.completed blocks inside its unit of work.
        await wait_until(lambda: count_is(pg, "SELECT count(*) FROM processed_events", 2), 20, "task.created applied")
        holder = await asyncpg.connect(dsn(pg))
        await holder.execute("BEGIN; LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
        assert c.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=h).status_code == 200
        blocked = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'notifications'::regclass"
        deadline = time.monotonic() + 20
        while await holder.fetchval(blocked) == 0:
            assert time.monotonic() < deadline, "the handler never reached the notifications table"
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        await holder.execute("ROLLBACK")
        await holder.close()
        start_worker(**env)
        await wait_until(
            lambda: count_is(pg, "SELECT count(*) FROM notifications WHERE task_id = $1", 1, _uuid(task["id"])),
            30,
            "the completed notification",
        )
        await asyncio.sleep(1)
        assert await scalar(pg, "SELECT count(*) FROM notifications") == 1
        assert await scalar(pg, "SELECT count(*) FROM processed_events") == 4  # 2 events x 2 consumers
        assert await scalar(pg, "SELECT sum(completed) FROM daily_task_stats") == 1
        r = c.get("/api/v1/notifications", headers=h).json()
        assert [(n["kind"], n["title"], n["task_id"]) for n in r["items"]] == [("completed", "kill me", task["id"])]


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


async def test_two_relays_and_two_workers_over_a_thousand_events(
    pg: str, broker_names: BrokerNames, start_server: Callable[..., ServerProcess], start_worker: Callable[..., Any]
) -> None:
    """250 tasks x (created, updated, completed, deleted) through two `serve` relays (the leader is
    SIGKILLed half-way) and two workers: every event published in order per task, every event
    applied once by each consumer, the counters exact."""
    probe = await broker_names.bind_queue()
    email, password = seed_user(pg)
    env = {"TASKHUB_DATABASE_URL": pg, **broker_names.env(), "TASKHUB_RATE_LIMIT_ENABLED": "false"}
    a, b = start_server(**env), start_server(**env)
    start_worker(**env)
    start_worker(**env)

    def leader() -> ServerProcess | None:
        for s in (a, b):
            if httpx.get(f"{s.url}/ready", timeout=5).json()["checks"]["broker"].get("relay_leader"):
                return s
        return None

    async def has_leader() -> bool:
        return leader() is not None

    await wait_until(has_leader, 10, "a relay leader")
    killed = leader()
    assert killed is not None
    survivor = b if killed is a else a

    def lifecycle(c: httpx.Client, h: dict[str, str], i: int) -> None:
        t = c.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=h).json()
        assert c.patch(f"/api/v1/tasks/{t['id']}", json={"priority": "high"}, headers=h).status_code == 200
        assert c.patch(f"/api/v1/tasks/{t['id']}", json={"status": "done"}, headers=h).status_code == 200
        assert c.delete(f"/api/v1/tasks/{t['id']}", headers=h).status_code == 204

    with a.client() as ca, b.client() as cb:
        h = login(ca, email, password)
        for i in range(125):
            lifecycle(ca if i % 2 else cb, h, i)
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait(timeout=10)
        cs = ca if survivor is a else cb
        for i in range(125, 250):
            lifecycle(cs, h, i)

    await wait_until(lambda: count_is(pg, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0), 30, "the outbox")
    await wait_until(lambda: count_is(pg, "SELECT count(*) FROM processed_events", 2000), 60, "both consumers")
    assert await scalar(pg, "SELECT count(*) FROM outbox") == 1000
    assert await scalar(pg, "SELECT count(DISTINCT seq) FROM outbox") == 1000
    assert [tuple(r) for r in await sql(pg, "SELECT sum(created), sum(completed) FROM daily_task_stats")] == [
        (250, 250)
    ]
    assert await scalar(pg, "SELECT count(*) FROM notifications WHERE kind = 'completed'") == 250
    # deleted after completed for every task: no creation time left behind
    assert await scalar(pg, "SELECT count(*) FROM analytics_task_starts") == 0
    messages = await broker_names.drain(probe, 1000, within=30)
    events = [payload(m) for m in messages]
    unique = {e["event_id"]: e for e in events}
    assert len(unique) == 1000  # none lost (a relay killed mid-batch may republish: at least once)
    by_task: dict[str, list[str]] = {}
    seen: set[str] = set()
    for e in events:
        if e["event_id"] in seen:
            continue  # a republished duplicate; consumers skip it by event_id
        seen.add(e["event_id"])
        by_task.setdefault(e["task_id"], []).append(e["type"])
    assert len(by_task) == 250
    assert all(
        types == ["task.created", "task.updated", "task.completed", "task.deleted"] for types in by_task.values()
    )


async def test_a_poison_message_goes_to_the_dlq_and_is_applied_once_after_replay(
    pg: str, broker_names: BrokerNames, start_server: Callable[..., ServerProcess], start_worker: Callable[..., Any]
) -> None:
    email, password = seed_user(pg)
    env = {"TASKHUB_DATABASE_URL": pg, **broker_names.env(), "TASKHUB_WORKER_RETRY_DELAYS": "0.2,0.4"}
    server = start_server(**env)
    start_worker(**env)
    await sql(pg, "ALTER TABLE analytics_task_starts RENAME TO analytics_task_starts_away")  # the 'bug'
    try:
        with server.client() as c:
            h = login(c, email, password)
            task = c.post("/api/v1/tasks", json={"title": "poison"}, headers=h).json()

            async def one_dead() -> bool:
                channel = await broker_names.connection.channel()  # a failed passive declare closes it
                try:
                    queue = await channel.declare_queue(f"{broker_names.prefix}.analytics.dlq", passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    return False  # the worker has not declared it yet
                finally:
                    if not channel.is_closed:
                        await channel.close()
                return queue.declaration_result.message_count == 1

            await wait_until(one_dead, 30, "the dead letter")
    finally:
        await sql(pg, "ALTER TABLE analytics_task_starts_away RENAME TO analytics_task_starts")  # the fix

    def dead() -> list[dict[str, Any]]:
        out = cli(env, "dlq", "list")
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    [letter] = dead()
    assert letter["consumer"] == "analytics"
    assert letter["attempts"] == 3  # first try + 2 retries
    assert "analytics_task_starts" in letter["error"]
    assert letter["event"]["task_id"] == task["id"] and letter["event"]["type"] == "task.created"
    assert await scalar(pg, "SELECT count(*) FROM daily_task_stats") == 0
    # the other consumer was not held up
    assert await scalar(pg, "SELECT count(*) FROM processed_events WHERE consumer = 'notifications'") == 1
    replayed = cli(env, "dlq", "replay", "--consumer", "analytics")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "replayed 1 messages"
    await wait_until(lambda: count_is(pg, "SELECT count(*) FROM daily_task_stats", 1), 20, "the replayed event")
    await asyncio.sleep(1)
    assert [tuple(r) for r in await sql(pg, "SELECT created, completed FROM daily_task_stats")] == [(1, 0)]
    assert await scalar(pg, "SELECT count(*) FROM processed_events WHERE consumer = 'analytics'") == 1
    assert dead() == []
