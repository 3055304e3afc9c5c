"""Optimistic concurrency, made deterministic: the service is handed a task read before another
request changed it (the interleaving a race produces), on both backends.

Each test fails when the version guard it covers is removed (``version_id_col`` on ``Task`` for
updates, ``Task.version == task.version`` in ``tasks.repository.delete_task`` for deletes).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskhub.core.cache import NullCache
from taskhub.tasks import service as task_service
from taskhub.tasks.errors import VersionMismatch
from taskhub.tasks.models import Task
from taskhub.users import repository as user_repo
from tests.conftest import Api
from tests.helpers import ctx_of


async def _stale_copy(app: FastAPI, email: str, task_id: str) -> tuple[Any, Task]:
    """The owner and the task as a request would have read them, before anything below changes it."""
    async with ctx_of(app).db.unit_of_work(readonly=True) as session:
        from taskhub.core.security import normalize_email

        user = await user_repo.get_by_email(session, normalize_email(email))
        assert user is not None
        task = await task_service.get_owned(session, user, uuid.UUID(task_id))
    return user, task


class TestStaleWrites:
    async def test_an_update_of_a_stale_task_is_refused_and_changes_nothing(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient
    ) -> None:
        h = await api.user("race@x.io")
        task = await api.task(h, title="first")
        user, stale = await _stale_copy(app, "race@x.io", task["id"])
        winner = await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "winner"}, headers=h)
        assert winner.status_code == 200
        with pytest.raises(VersionMismatch):
            async with ctx_of(app).db.unit_of_work() as session:
                session.add(stale)
                await task_service.update(session, user, stale, {"title": "loser"}, cache=NullCache())
        now = (await client.get(f"/api/v1/tasks/{task['id']}", headers=h)).json()
        assert (now["title"], now["version"]) == ("winner", 2)

    async def test_a_delete_of_a_stale_task_is_refused_and_deletes_nothing(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient
    ) -> None:
        h = await api.user("race2@x.io")
        task = await api.task(h, title="keep me")
        user, stale = await _stale_copy(app, "race2@x.io", task["id"])
        r = await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=h)
        assert r.status_code == 200
        with pytest.raises(VersionMismatch):
            async with ctx_of(app).db.unit_of_work() as session:
                await task_service.delete(session, user, stale, cache=NullCache())
        now = await client.get(f"/api/v1/tasks/{task['id']}", headers=h)
        assert now.status_code == 200
        assert now.json()["version"] == 2


class TestManyAtOnce:
    async def test_concurrent_writes_and_reads_of_several_users_all_succeed(
        self, api: Api, client: httpx.AsyncClient
    ) -> None:
        """40 requests at once over the pool: behind PgBouncer in transaction mode each transaction
        may get another server connection, which asyncpg's cached prepared statements do not
        survive (this fails there without ``TASKHUB_DATABASE_PGBOUNCER``)."""
        users = [await api.user(f"many{i}@x.io") for i in range(4)]

        async def create_and_read(headers: dict[str, str], i: int) -> None:
            created = await api.task(headers, title=f"task {i}")
            one = await client.get(f"/api/v1/tasks/{created['id']}", headers=headers)
            assert one.status_code == 200 and one.json() == created
            listed = await client.get("/api/v1/tasks", params={"limit": 100, "q": "task"}, headers=headers)
            assert listed.status_code == 200 and created in listed.json()["items"]

        await asyncio.gather(*(create_and_read(users[i % 4], i) for i in range(40)))
        for headers in users:
            assert (await client.get("/api/v1/tasks/stats", headers=headers)).json()["total"] == 10
