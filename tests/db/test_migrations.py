"""The Alembic history on both databases: it upgrades, downgrades and upgrades again on a fresh
database, and the schema it builds is the one the models declare (autogenerate finds nothing to do).

Each test gets an empty database of its own (a SQLite file, a new PostgreSQL database), never the
session's shared one, because downgrading drops every table.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from taskhub.config import Settings
from taskhub.db import migrate
from taskhub.db.models import Base
from taskhub.db.session import make_engine
from tests.conftest import BACKENDS, fresh_postgres_database

pytestmark = pytest.mark.asyncio

#: table name -> sorted names of the indexes the models declare (constraints' own indexes not included)
MODEL_INDEXES = {name: sorted(str(i.name) for i in table.indexes) for name, table in Base.metadata.tables.items()}


@pytest_asyncio.fixture(params=BACKENDS)
async def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a new, empty database of the param's backend (disposed, and dropped, afterwards)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        engine = make_engine(url, Settings(database_url=url, data_dir=tmp_path))
        yield engine
        await engine.dispose()
        return
    async with fresh_postgres_database("taskhub_migrations_") as url:
        engine = make_engine(url, Settings(database_url=url, data_dir=tmp_path))
        yield engine
        await engine.dispose()


def _schema(conn: Connection) -> dict[str, Any]:
    """What the database holds: tables with their index names, sequences (PostgreSQL) and the
    Alembic revision."""
    inspector = inspect(conn)
    return {
        "tables": {
            # PostgreSQL also lists the index behind each unique constraint; the drift test covers those
            t: sorted(str(i["name"]) for i in inspector.get_indexes(t) if not i.get("duplicates_constraint"))
            for t in inspector.get_table_names()
        },
        "sequences": set(inspector.get_sequence_names()) if conn.dialect.name == "postgresql" else set(),
        "revision": MigrationContext.configure(conn).get_current_revision(),
    }


async def _inspect(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(_schema)


def _drift(conn: Connection) -> list[Any]:
    """Alembic's autogenerate comparison of the live schema against ``Base.metadata``, with the
    options of ``taskhub/migrations/env.py`` (types compared; SQLite in batch mode)."""
    context = MigrationContext.configure(
        conn,
        opts={"compare_type": True, "render_as_batch": conn.dialect.name == "sqlite"},
    )
    return list(compare_metadata(context, Base.metadata))


class TestHistory:
    async def test_upgrade_downgrade_upgrade(self, empty_engine: AsyncEngine) -> None:
        head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
        assert head is not None

        await migrate.upgrade(empty_engine)
        first = await _inspect(empty_engine)
        assert first["tables"] == {"alembic_version": [], **MODEL_INDEXES}
        assert first["revision"] == head

        await migrate.downgrade(empty_engine, "base")
        # Only Alembic's own (empty) version table is left: no table, index or sequence of the app.
        assert await _inspect(empty_engine) == {"tables": {"alembic_version": []}, "sequences": set(), "revision": None}

        await migrate.upgrade(empty_engine)
        assert await _inspect(empty_engine) == first


class TestDrift:
    async def test_autogenerate_finds_nothing_after_upgrade(self, empty_engine: AsyncEngine) -> None:
        """The models (``Base.metadata``) and the migration history describe the same schema."""
        await migrate.upgrade(empty_engine)
        async with empty_engine.connect() as conn:
            drift = await conn.run_sync(_drift)
        assert drift == [], (
            "the models differ from the migrated schema: add a migration (alembic revision --autogenerate)"
        )


class TestTimeZoneAllDay:
    async def test_existing_rows_become_utc_users_and_timed_tasks(self, empty_engine: AsyncEngine) -> None:
        """0005 on a database with data: users get ``UTC``, tasks stay timed (their ``due_date``
        untouched); the all-day rule is a CHECK constraint; downgrading keeps every task."""
        await migrate.upgrade(empty_engine, "0004_outbox_headers")
        user_id, task_id = uuid.uuid4(), uuid.uuid4()
        now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        due = datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
        naive = empty_engine.dialect.name == "sqlite"  # SQLite keeps naive UTC text (db/base.UTCDateTime)

        def ts(value: datetime) -> datetime:
            return value.replace(tzinfo=None) if naive else value

        async with empty_engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, email_normalized, name, password_hash, role, is_active,"
                    " tokens_valid_after, created_at, updated_at) VALUES (:id, 'a@x.io', 'a@x.io', 'A', 'h',"
                    " 'user', true, :now, :now, :now)"
                ),
                {"id": user_id if not naive else user_id.hex, "now": ts(now)},
            )
            await conn.execute(
                text(
                    "INSERT INTO tasks (id, owner_id, title, description, status, priority, priority_rank, due_date,"
                    " tags, created_at, updated_at, version) VALUES (:id, :owner, 't', '', 'todo', 'medium', 2,"
                    " :due, '[]', :now, :now, 1)"
                ),
                {
                    "id": task_id if not naive else task_id.hex,
                    "owner": user_id if not naive else user_id.hex,
                    "due": ts(due),
                    "now": ts(now),
                },
            )
        await migrate.upgrade(empty_engine)
        async with empty_engine.begin() as conn:
            assert (await conn.execute(text("SELECT time_zone FROM users"))).scalar_one() == "UTC"
            assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar_one() == 1
            row = (await conn.execute(text("SELECT all_day, due_on, due_date FROM tasks"))).one()
            assert (bool(row.all_day), row.due_on) == (False, None)
            assert row.due_date in (ts(due), str(ts(due)), due)
        for bad in ("all_day = true", "due_on = '2026-12-24'"):  # the rule holds in the database itself
            with pytest.raises(IntegrityError):
                async with empty_engine.begin() as conn:
                    await conn.execute(text(f"UPDATE tasks SET {bad}"))
        await migrate.downgrade(empty_engine, "0004_outbox_headers")
        async with empty_engine.begin() as conn:  # nothing cascaded away on the way down
            assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar_one() == 1
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one() == 1
