"""Reads on streaming replicas with read-your-writes (issue 14, "Read routing"), on the real
Patroni cluster of ``deploy/pg-cluster``: replay paused on every replica with
``pg_wal_replay_pause()``, so a replica that answered a read is provably behind the primary.

Which server answered is asserted through ``Database.route_counts`` (reads per target), whose
replica names the monitor maps to the port the server itself reports (``inet_server_port()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from taskhub.app import create_app
from taskhub.config import Settings
from taskhub.context import AppContext
from taskhub.db.replicas import replica_name
from tests.conftest import JWT_SECRET, PASSWORD, Api, client_for
from tests.helpers import promote_to_admin
from tests.integration.conftest import SHARED_REDIS, ClusterDatabase, cluster_sql, patroni_maintenance, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database (``TASKHUB_TEST_REDIS_URL``), emptied before and after."""
    client = redis.Redis.from_url(SHARED_REDIS)
    client.flushdb()
    yield SHARED_REDIS
    client.flushdb()
    client.close()


@contextlib.asynccontextmanager
async def replica_app(db: ClusterDatabase, **overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Taskhub in-process on the cluster: writes through the writer port, reads on the replicas."""
    values: dict[str, Any] = {
        "database_url": db.writer,
        "database_replica_urls": db.replicas,
        "jwt_secret": JWT_SECRET,
        "argon2_memory_cost": 1024,
        "argon2_time_cost": 1,
        "rate_limit_enabled": False,
        "auto_migrate": False,
        "purge_interval": 0,
        "log_level": "WARNING",
        "database_replica_max_lag": 60,
    }
    values.update(overrides)
    app = create_app(Settings(**values))
    async with LifespanManager(app), client_for(app) as client:
        yield app, client


def ctx(app: FastAPI) -> AppContext:
    found: AppContext = app.state.ctx
    return found


class Reads:
    """Reads per target since the last :meth:`take` (``primary`` / ``replica``)."""

    def __init__(self, app: FastAPI) -> None:
        self.db = ctx(app).db
        self.replicas = {r.name for r in self.db.monitor.replicas} if self.db.monitor else set()
        self.before = Counter(self.db.route_counts)

    def take(self) -> dict[str, int]:
        now = Counter(self.db.route_counts)
        delta = now - self.before
        self.before = now
        return {
            "primary": delta["primary"],
            "replica": sum(n for name, n in delta.items() if name in self.replicas),
        }


async def caught_up(app: FastAPI) -> None:
    """Wait until the monitor sees every replica at the primary's current position."""
    db = ctx(app).db
    assert db.monitor is not None
    target = await db.current_position()
    assert target is not None

    def ready() -> bool:
        return all(r.position is not None and r.position >= target for r in db.monitor.replicas)  # type: ignore[union-attr]

    await wait_for(ready, "the replicas to replay the primary's position")


@contextlib.asynccontextmanager
async def replay_paused(db: ClusterDatabase) -> AsyncIterator[None]:
    """``pg_wal_replay_pause()`` on every replica for the block (resumed even when it fails), in
    Patroni's maintenance mode (Patroni resumes a paused replay otherwise)."""
    await asyncio.to_thread(patroni_maintenance, db.cluster, True)
    try:
        for url in db.replicas:
            await cluster_sql(url, "select pg_wal_replay_pause()")
        for url in db.replicas:
            await wait_for(lambda url=url: _paused(url), f"replay paused on {url}", within_s=10)
        yield
    finally:
        for url in db.replicas:
            with contextlib.suppress(OSError, Exception):
                await cluster_sql(url, "select pg_wal_replay_resume()")
        await asyncio.to_thread(patroni_maintenance, db.cluster, False)


async def _paused(url: str) -> bool:
    rows = await cluster_sql(url, "select pg_get_wal_replay_pause_state()")
    return bool(rows[0][0] == "paused")


async def rows_on_replicas(db: ClusterDatabase, task_id: str) -> list[int]:
    return [
        (await cluster_sql(url, "select count(*) from tasks where id = $1::uuid", task_id))[0][0] for url in db.replicas
    ]


async def login(api: Api, email: str) -> dict[str, str]:
    tokens = await api.login(email)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "in-process"])
async def test_own_writes_are_read_back_at_once_while_others_read_the_paused_replicas(
    cluster_database: ClusterDatabase, redis_url: str, shared: bool
) -> None:
    db = cluster_database
    overrides = {"redis_url": redis_url} if shared else {}
    async with replica_app(db, **overrides) as (app, client):
        api = Api(client)
        tag = "r" if shared else "m"
        writer = await api.user(f"writer-{tag}@x.io")
        reader = await api.user(f"reader-{tag}@x.io")
        await api.task(reader, title="the reader's task")
        await caught_up(app)

        # Both replicas report themselves as servers in recovery on the cluster's replica ports.
        status = ctx(app).db.monitor.status()  # type: ignore[union-attr]
        node_ports = {int(u.rsplit(":", 1)[1].split("/")[0]) for u in db.replicas}
        assert {(s["server_port"], s["in_recovery"], s["usable"]) for s in status} == {
            (p, True, True) for p in node_ports
        }

        reads = Reads(app)
        async with replay_paused(db):
            for round_ in range(3):
                created = await api.task(writer, title=f"written {round_}")
                if round_ == 0:  # authenticated before the writer's first write since the pause
                    assert reads.take() == {"primary": 0, "replica": 1}
                one = await client.get(f"/api/v1/tasks/{created['id']}", headers=writer)
                assert one.status_code == 200 and one.json() == created
                page = (await client.get("/api/v1/tasks", headers=writer)).json()
                assert page["total"] == round_ + 1 and page["items"][0] == created
                changed = await client.patch(f"/api/v1/tasks/{created['id']}", json={"status": "done"}, headers=writer)
                assert changed.status_code == 200
                again = (await client.get(f"/api/v1/tasks/{created['id']}", headers=writer)).json()
                assert (again["status"], again["version"]) == ("done", 2)
                # The replicas really are behind: neither has the task the writer just read back.
                assert await rows_on_replicas(db, created["id"]) == [0, 0]
            # Every later read of the writer went to the primary: per round the authentication of
            # the POST (not in the first round) and the PATCH, and of three GETs (auth + data).
            counts = reads.take()
            assert counts["replica"] == 0
            if shared:
                assert counts == {"primary": 3 * 8 - 1, "replica": 0}

            # A user who has not written since the pause reads from the (paused) replicas.
            for _ in range(4):
                theirs = await client.get("/api/v1/tasks", headers=reader)
                assert theirs.status_code == 200
                assert [t["title"] for t in theirs.json()["items"]] == ["the reader's task"]
                assert (await client.get("/api/v1/users/me", headers=reader)).json()["email"] == f"reader-{tag}@x.io"
            # 8 authentications + 1 list read (the page is cached after the first); without Redis
            # the in-process auth cache answers most authentications.
            counts = reads.take()
            assert counts["primary"] == 0 and counts["replica"] >= 1
            if shared:
                assert counts == {"primary": 0, "replica": 8 + 1}

        # Replay resumed: once the replicas have replayed the writer's last write, the writer's
        # reads go back to them.
        await caught_up(app)
        await client.get("/api/v1/tasks/stats", headers=writer)
        assert reads.take() == {"primary": 0, "replica": 2 if shared else 1}


async def test_a_lagging_replica_is_skipped_for_everyone(cluster_database: ClusterDatabase, redis_url: str) -> None:
    db = cluster_database
    async with replica_app(db, redis_url=redis_url, database_replica_max_lag=1.0) as (app, client):
        api = Api(client)
        writer = await api.user("lag-writer@x.io")
        reader = await api.user("lag-reader@x.io")
        await caught_up(app)
        reads = Reads(app)
        async with replay_paused(db):
            await client.get("/api/v1/tasks/stats", headers=reader)
            assert reads.take() == {"primary": 0, "replica": 2}
            await api.task(writer, title="moves the primary on")
            reads.take()
            # The replicas now miss a commit; once it is older than max_lag (1 s) they are lagging.
            await asyncio.sleep(1.6)
            await client.get("/api/v1/tasks/stats", headers=reader)
            assert reads.take() == {"primary": 2, "replica": 0}
        await caught_up(app)
        await client.get("/api/v1/tasks/stats", headers=reader)
        assert reads.take() == {"primary": 0, "replica": 2}


async def test_revocations_are_never_undone_by_lag(cluster_database: ClusterDatabase, redis_url: str) -> None:
    """Authentication reads at the revoked user's floor: a replica that has not replayed a password
    change or a deactivation never answers for that user."""
    db = cluster_database
    async with replica_app(db, redis_url=redis_url) as (app, client):
        api = Api(client)
        victim = await api.user("revoked@x.io")
        deactivated = await api.user("deactivated@x.io")
        await api.register("boss@x.io")
        await promote_to_admin(app, "boss@x.io")
        boss = await login(api, "boss@x.io")
        deactivated_id = (await client.get("/api/v1/users/me", headers=deactivated)).json()["id"]
        await caught_up(app)
        async with replay_paused(db):
            assert (await client.get("/api/v1/users/me", headers=victim)).status_code == 200
            r = await client.post(
                "/api/v1/users/me/password",
                json={"current_password": PASSWORD, "new_password": "another long passphrase"},
                headers=victim,
            )
            assert r.status_code == 204
            assert (await client.get("/api/v1/tasks", headers=victim)).status_code == 401

            assert (await client.get("/api/v1/tasks", headers=deactivated)).status_code == 200
            r = await client.patch(f"/api/v1/admin/users/{deactivated_id}", json={"is_active": False}, headers=boss)
            assert r.status_code == 200
            assert (await client.get("/api/v1/tasks", headers=deactivated)).status_code == 401
            # ...while the replicas still hold the old rows (the 401s came from the primary).
            rows = await cluster_sql(db.replicas[0], "select is_active from users where id = $1::uuid", deactivated_id)
            assert rows[0][0] is True


async def test_the_list_cache_never_keeps_a_page_read_from_a_replica_behind_a_write(
    cluster_database: ClusterDatabase, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race, made deterministic: a list request authenticates (learning the user's floor), then
    the user's write commits and invalidates the cache, then the request reads the cache
    generation (the new one) and the page from a replica that has not replayed the write. That
    stale page must not be served to the user's next request."""
    db = cluster_database
    async with replica_app(db, redis_url=redis_url) as (app, client):
        api = Api(client)
        h = await api.user("race@x.io")
        await api.task(h, title="first")
        assert (await client.get("/api/v1/tasks", headers=h)).json()["total"] == 1
        await caught_up(app)
        cache = ctx(app).cache
        real_generation = cache.generation
        written: list[dict[str, Any]] = []

        async def generation_after_a_write(user: str) -> int | None:
            if not written:
                written.append(await api.task(h, title="second"))  # commits, records the floor, bumps
            return await real_generation(user)

        async with replay_paused(db):
            monkeypatch.setattr(cache, "generation", generation_after_a_write)
            racing = await client.get("/api/v1/tasks", headers=h)
            monkeypatch.setattr(cache, "generation", real_generation)
            # The racing request read the paused replica (it started before the write)...
            assert racing.json()["total"] == 1 and written
            # ...but its page is not what the user reads next.
            after = await client.get("/api/v1/tasks", headers=h)
            assert after.headers["x-cache"] == "MISS"
            assert [t["title"] for t in after.json()["items"]] == ["second", "first"]
            assert (await client.get("/api/v1/tasks", headers=h)).headers["x-cache"] == "HIT"


async def test_reads_succeed_while_replicas_are_stopped(cluster_database: ClusterDatabase, redis_url: str) -> None:
    db = cluster_database
    async with replica_app(db, redis_url=redis_url) as (app, client):
        api = Api(client)
        h = await api.user("survivor@x.io")
        task = await api.task(h, title="still here")
        await caught_up(app)
        reads = Reads(app)
        for _ in range(6):  # open pooled connections to both replicas
            assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=h)).status_code == 200
        assert reads.take()["replica"] == 12

        status = db.cluster.status()
        by_port = {m["port"]: m["name"] for m in status["members"]}
        names = [by_port[int(u.rsplit(":", 1)[1].split("/")[0])] for u in db.replicas]
        monitor = ctx(app).db.monitor
        assert monitor is not None
        # Maintenance mode: Patroni leaves the killed servers down until the test is done with them.
        await asyncio.to_thread(patroni_maintenance, db.cluster, True)
        try:
            for stopped, name in enumerate(names, start=1):
                os.kill(status["processes"][f"postgres-{name}"]["pid"], signal.SIGKILL)
                # At once, before the monitor has noticed: reads on broken pooled connections retry
                # on the other replica or the primary.
                for _ in range(6):
                    got = await client.get(f"/api/v1/tasks/{task['id']}", headers=h)
                    assert got.status_code == 200 and got.json() == task
                counts = reads.take()
                # Every statement was answered (12: task and auth reads). Not asserted: which server
                # answered right after the kill. A SIGKILLed postmaster's backends notice its death
                # only later, so an already-open connection may still answer one statement (seen in CI).
                assert counts["primary"] + counts["replica"] == 12, (stopped, counts)
            assert [s["usable"] for s in monitor.status()] == [False, False]
        finally:
            await asyncio.to_thread(patroni_maintenance, db.cluster, False)
        # Patroni restarts both; once they stream again, reads return to them.
        await asyncio.to_thread(db.cluster.up)
        await wait_for(lambda: all(s["usable"] for s in monitor.status()), "the replicas back", within_s=30)
        await caught_up(app)
        reads.take()
        assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=h)).status_code == 200
        assert reads.take() == {"primary": 0, "replica": 2}


def test_replica_names_carry_no_credentials() -> None:
    assert replica_name("postgresql+asyncpg://u:secret@10.0.0.5:6432/taskhub") == "10.0.0.5:6432/taskhub"
