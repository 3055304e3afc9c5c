"""Tasks sharded by owner (``taskhub.db.sharding``, the ``sharded`` backend: two throw-away
PostgreSQL servers holding the ``postgres_fdw`` partitions). The rest of ``tests/tasks``, ``users``
and ``admin`` also runs on this backend; these tests check what only sharding has: where rows
live, and that every per-user statement the API sends is pruned to the owner's one shard."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tests.conftest import PASSWORD, Api, Backend
from tests.helpers import ctx_of, promote_to_admin

pytestmark = pytest.mark.sharded_only

SHARDED_TABLES = ("tasks", "idempotency_keys")


async def rows_per_shard(backend: Backend, table: str, owner_column: str) -> list[dict[str, int]]:
    """``{owner: rows}`` of ``table`` on each shard, read on the shard servers themselves."""
    found = []
    for index, url in enumerate(backend.shard_urls):
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(f"select {owner_column}::text, count(*) from {table}_shard_{index} group by 1")
        finally:
            await conn.close()
        found.append({owner: n for owner, n in rows})
    return found


@contextmanager
def statements(app: FastAPI) -> Iterator[list[tuple[str, Any]]]:
    """Every statement (driver SQL and parameters) the app sends to the coordinator in the block."""
    seen: list[tuple[str, Any]] = []
    engine = ctx_of(app).db.primary.sync_engine

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def partitions_in(plan: Any) -> set[str]:
    """Relation names of the ``*_shard_<n>`` partitions a JSON plan touches."""
    found: set[str] = set()
    if isinstance(plan, dict):
        name = plan.get("Relation Name")
        if isinstance(name, str) and "_shard_" in name:
            found.add(name)
        for value in plan.values():
            found |= partitions_in(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= partitions_in(item)
    return found


async def explain(app: FastAPI, statement: str, parameters: Any) -> set[str]:
    async with ctx_of(app).db.primary.connect() as conn:
        result = await conn.exec_driver_sql(f"EXPLAIN (VERBOSE, FORMAT JSON) {statement}", parameters)
        raw = result.scalar_one()
    plan = json.loads(raw) if isinstance(raw, str) else raw
    return partitions_in(plan)


async def test_each_users_rows_live_on_exactly_one_shard_and_both_shards_are_used(
    backend: Backend, api: Api, client: httpx.AsyncClient
) -> None:
    owners: list[str] = []
    # Users until both shards hold some (ids are random: one shard for 6 users has odds 1 in 32,
    # for 30 users 1 in 5e8), at least 6.
    while len(owners) < 6 or (len(owners) < 30 and not all(await rows_per_shard(backend, "tasks", "owner_id"))):
        h = await api.user(f"spread{len(owners)}@x.io")
        owners.append((await client.get("/api/v1/users/me", headers=h)).json()["id"])
        for j in range(3):
            r = await client.post("/api/v1/tasks", json={"title": f"t{j}"}, headers={**h, "Idempotency-Key": f"k{j}"})
            assert r.status_code == 201
    tasks = await rows_per_shard(backend, "tasks", "owner_id")
    keys = await rows_per_shard(backend, "idempotency_keys", "user_id")
    for owner in owners:
        assert sorted(shard.get(owner, 0) for shard in tasks) == [0, 3], owner
        # A user's idempotency records live with their tasks.
        assert [shard.get(owner, 0) for shard in keys] == [3 if shard.get(owner) else 0 for shard in tasks]
    assert all(tasks), f"{len(owners)} owners all hashed to one shard"


async def test_every_per_user_statement_is_pruned_to_the_owners_shard(
    app: FastAPI, api: Api, client: httpx.AsyncClient
) -> None:
    h = await api.user("pruned@x.io")
    await api.user("other@x.io")
    with statements(app) as seen:
        created = await api.task(h, title="first", tags=["work"], due_date="2030-01-01T00:00:00Z")
        for i in range(3):
            await api.task(h, title=f"more {i}")
        keyed = {**h, "Idempotency-Key": "same"}
        assert (await client.post("/api/v1/tasks", json={"title": "k"}, headers=keyed)).status_code == 201
        assert (await client.post("/api/v1/tasks", json={"title": "k"}, headers=keyed)).status_code == 201
        tid = created["id"]
        assert (await client.get(f"/api/v1/tasks/{tid}", headers=h)).status_code == 200
        for query in ({"limit": 2}, {"limit": 2, "page": 2}, {"tag": "work", "q": "fir"}, {"status": "todo"}):
            assert (await client.get("/api/v1/tasks", params=query, headers=h)).status_code == 200
        cursor = (await client.get("/api/v1/tasks", params={"limit": 2}, headers=h)).json()["next_cursor"]
        assert (await client.get("/api/v1/tasks", params={"cursor": cursor}, headers=h)).status_code == 200
        assert (await client.get("/api/v1/tasks/stats", headers=h)).status_code == 200
        assert (await client.patch(f"/api/v1/tasks/{tid}", json={"status": "done"}, headers=h)).status_code == 200
        assert (await client.put(f"/api/v1/tasks/{tid}", json={"title": "again"}, headers=h)).status_code == 200
        assert (await client.delete(f"/api/v1/tasks/{tid}", headers=h)).status_code == 204
        assert (await client.delete(f"/api/v1/tasks/{tid}", headers=h)).status_code == 404
        r = await client.request("DELETE", "/api/v1/users/me", json={"current_password": PASSWORD}, headers=h)
        assert r.status_code == 204
    checked = 0
    shards_used: set[str] = set()
    for statement, parameters in seen:
        lowered = statement.lower()
        if not any(f" {table}" in lowered for table in SHARDED_TABLES) or "insert into" in lowered:
            continue  # inserts are routed row by row (tuple routing), not planned per partition
        touched = await explain(app, statement, parameters)
        for table in SHARDED_TABLES:
            if f" {table}" in lowered:
                on_table = {p for p in touched if p.startswith(f"{table}_shard_")}
                assert len(on_table) == 1, f"{statement}\n{parameters}\n-> {touched}"
                shards_used |= {p.rsplit("_", 1)[1] for p in on_table}
        checked += 1
    assert checked >= 20
    assert len(shards_used) == 1  # one user's statements all went to the same shard


async def test_admin_listing_asks_every_shard_and_admin_deletion_clears_the_users_shard(
    app: FastAPI, backend: Backend, api: Api, client: httpx.AsyncClient
) -> None:
    await api.register("root@x.io")
    await promote_to_admin(app, "root@x.io")
    root = {"Authorization": f"Bearer {(await api.login('root@x.io'))['access_token']}"}
    victims = []
    for i in range(6):
        h = await api.user(f"many{i}@x.io")
        await api.task(h, title=f"task of {i}")
        victims.append((await client.get("/api/v1/users/me", headers=h)).json()["id"])
    with statements(app) as seen:
        listing = await client.get("/api/v1/admin/tasks", params={"limit": 100}, headers=root)
    assert listing.json()["total"] == 6
    (select,) = [(s, p) for s, p in seen if "from tasks" in s.lower() and "count(" not in s.lower()]
    assert await explain(app, *select) == {"tasks_shard_0", "tasks_shard_1"}
    victim = uuid.UUID(victims[0])
    r = await client.delete(f"/api/v1/admin/users/{victim}", headers=root)
    assert r.status_code == 204
    assert all(str(victim) not in shard for shard in await rows_per_shard(backend, "tasks", "owner_id"))
