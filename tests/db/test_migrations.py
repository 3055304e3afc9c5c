"""The Alembic history is reversible and ends at the models (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from taskhub.config import Settings
from taskhub.db import migrate
from taskhub.db.models import Base
from taskhub.db.session import make_engine
from tests.conftest import IN_CI, PG_URL, Backend

EVENT_TABLES = {
    "processed_events",
    "notifications",
    "notification_preferences",
    "daily_task_stats",
    "analytics_task_starts",
}


async def _fresh_url(backend: Backend, tmp_path: Any) -> tuple[str, Any]:
    if backend.name == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", None
    dsn = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable: {exc!r}")
        pytest.skip(f"PostgreSQL unreachable: {exc!r}")
    name = "taskhub_mig_" + secrets.token_hex(4)
    await admin.execute(f'CREATE DATABASE "{name}"')
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), (admin, name)


async def test_upgrade_downgrade_upgrade_matches_the_models(backend: Backend, tmp_path: Any) -> None:
    url, cleanup = await _fresh_url(backend, tmp_path)
    engine = make_engine(url, Settings(database_url=url, data_dir=tmp_path), immediate=False)
    try:

        async def tables() -> set[str]:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))

        await migrate.upgrade(engine)
        assert await tables() >= EVENT_TABLES
        await migrate.downgrade(engine, "0002")
        assert not (EVENT_TABLES & await tables())
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("outbox")})
        assert "seq" not in columns
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        # Only differences SQLite cannot express are tolerated (none expected on PostgreSQL).
        assert [d for d in diff if not _type_only(d)] == []
    finally:
        await engine.dispose()
        if cleanup is not None:
            admin, name = cleanup
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def _type_only(item: Any) -> bool:
    return isinstance(item, list) and all(step[0] == "modify_type" for step in item)
