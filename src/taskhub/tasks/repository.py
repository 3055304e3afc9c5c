"""SQL for tasks and idempotency keys. Every user query filters by ``owner_id`` first."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import RowMapping, Table, and_, case, delete, exists, func, insert, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.db.base import contains_pattern, keyset_after, keyset_order
from taskhub.events.models import OutboxEvent
from taskhub.tasks.models import IdempotencyKey, Task
from taskhub.tasks.schemas import TaskQuery

_SORT_COLUMNS: dict[str, Any] = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "priority": Task.priority_rank,
    "due_date": Task.due_date,
}


_tasks = cast(Table, Task.__table__)
_outbox = cast(Table, OutboxEvent.__table__)
_t = _tasks.c
READ_COLUMNS = (
    _t.id, _t.title, _t.description, _t.status, _t.priority, _t.due_date, _t.all_day, _t.due_on, _t.tags, _t.owner_id,
    _t.created_at, _t.updated_at, _t.completed_at, _t.version, _t.priority_rank,
)  # fmt: skip
"""What a client sees of a task (``TaskRead``) plus ``priority_rank`` for cursors: reads select
these columns with Core statements and get plain rows, not ORM objects (no identity map, no
attribute instrumentation on the hot read paths)."""


async def read_owned(session: AsyncSession, owner_id: uuid.UUID, task_id: uuid.UUID) -> RowMapping | None:
    """The :data:`READ_COLUMNS` of task ``task_id`` if ``owner_id`` owns it, else None."""
    stmt = select(*READ_COLUMNS).where(_t.owner_id == owner_id, _t.id == task_id)
    return (await session.execute(stmt)).mappings().first()


async def insert_with_event(session: AsyncSession, task: dict[str, Any], event: dict[str, Any]) -> None:
    """Insert a task (all its column values) and its outbox row in the caller's transaction.

    On PostgreSQL both go in one statement (a data-modifying CTE: one round trip); SQLite has no
    such CTEs and takes two statements, which cost no round trip there.
    """
    insert_task = insert(_tasks).values(task)
    insert_event = insert(_outbox).values(event)
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(insert_event.add_cte(insert_task.cte("new_task")))
    else:
        await session.execute(insert_task)
        await session.execute(insert_event)


async def get_owned(session: AsyncSession, owner_id: uuid.UUID, task_id: uuid.UUID) -> Task | None:
    """The task ``task_id`` if ``owner_id`` owns it, else None."""
    stmt = select(Task).where(Task.owner_id == owner_id, Task.id == task_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def all_day_owned(session: AsyncSession, owner_id: uuid.UUID) -> Sequence[Task]:
    """Every all-day task of ``owner_id`` (ORM objects, to be changed in the caller's unit of work)."""
    stmt = select(Task).where(Task.owner_id == owner_id, Task.all_day.is_(True)).order_by(Task.id)
    return (await session.execute(stmt)).scalars().all()


async def delete_task(session: AsyncSession, task: Task) -> bool:
    """Delete ``task`` only if it is still at ``task.version``; False when it changed or is gone."""
    result = await session.execute(
        delete(Task)
        .where(Task.owner_id == task.owner_id, Task.id == task.id, Task.version == task.version)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def delete_all_owned(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """Delete every task and idempotency record of ``owner_id`` (before deleting the account: with
    the tables sharded by owner no foreign key cascades there; on one server it is the same work
    the cascade would do)."""
    await session.execute(delete(Task).where(Task.owner_id == owner_id).execution_options(synchronize_session=False))
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == owner_id))


async def exists_owned(session: AsyncSession, owner_id: uuid.UUID, task_id: uuid.UUID) -> bool:
    """True when ``owner_id`` has a task ``task_id``."""
    stmt = select(Task.id).where(Task.owner_id == owner_id, Task.id == task_id)
    return (await session.execute(stmt)).first() is not None


def _filters(session: AsyncSession, query: TaskQuery, owner_id: uuid.UUID | None, now: datetime) -> list[Any]:
    conds: list[Any] = []
    if owner_id is not None:
        conds.append(Task.owner_id == owner_id)
    elif query.owner_id is not None:
        conds.append(Task.owner_id == query.owner_id)
    if query.status:
        conds.append(Task.status.in_(query.status))
    if query.priority:
        conds.append(Task.priority.in_(query.priority))
    if query.tag:
        tag = query.tag.strip().lower()
        if session.get_bind().dialect.name == "postgresql":
            conds.append(type_coerce(Task.tags, JSONB).contains([tag]))
        else:
            each = func.json_each(Task.tags).table_valued("value")
            conds.append(exists().select_from(each).where(each.c.value == tag))
    if query.q:
        pattern = contains_pattern(query.q)
        conds.append(or_(Task.title.ilike(pattern, escape="\\"), Task.description.ilike(pattern, escape="\\")))
    if query.due_before is not None:
        conds.append(Task.due_date < query.due_before)
    if query.due_after is not None:
        conds.append(Task.due_date > query.due_after)
    if query.overdue is True:
        conds.append(and_(Task.due_date < now, Task.status != "done"))
    elif query.overdue is False:
        conds.append(or_(Task.due_date.is_(None), Task.due_date >= now, Task.status == "done"))
    return conds


async def list_tasks(
    session: AsyncSession,
    query: TaskQuery,
    *,
    owner_id: uuid.UUID | None,
    now: datetime,
    offset: int | None,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> Sequence[RowMapping]:
    """The :data:`READ_COLUMNS` of tasks matching ``query`` in its sort order: ``limit`` rows from
    ``offset`` or after a keyset position. ``owner_id`` None lists every user's tasks (admin).
    """
    column = _SORT_COLUMNS[query.sort_key.name]
    nullable, descending = query.sort_key.nullable, query.descending
    stmt = select(*READ_COLUMNS).where(*_filters(session, query, owner_id, now))
    if after is not None:
        stmt = stmt.where(keyset_after(column, Task.id, *after, descending=descending, nullable=nullable))
    stmt = stmt.order_by(*keyset_order(column, Task.id, descending=descending, nullable=nullable)).limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return (await session.execute(stmt)).mappings().all()


async def count_tasks(session: AsyncSession, query: TaskQuery, *, owner_id: uuid.UUID | None, now: datetime) -> int:
    """How many tasks match ``query``."""
    stmt = select(func.count()).select_from(Task).where(*_filters(session, query, owner_id, now))
    return int((await session.execute(stmt)).scalar_one())


async def stats(session: AsyncSession, owner_id: uuid.UUID, now: datetime) -> dict[str, int]:
    """Counts for ``/tasks/stats`` in one query: total, per status, per priority, overdue, done in 7 days."""

    def count_if(cond: Any) -> Any:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    week_ago = now - timedelta(days=7)
    stmt = select(
        func.count().label("total"),
        count_if(Task.status == "todo").label("todo"),
        count_if(Task.status == "in_progress").label("in_progress"),
        count_if(Task.status == "done").label("done"),
        count_if(Task.priority == "low").label("low"),
        count_if(Task.priority == "medium").label("medium"),
        count_if(Task.priority == "high").label("high"),
        count_if(and_(Task.due_date < now, Task.status != "done")).label("overdue"),
        count_if(and_(Task.status == "done", Task.completed_at >= week_ago)).label("completed_last_7_days"),
    ).where(Task.owner_id == owner_id)
    row = (await session.execute(stmt)).one()
    return {key: int(value) for key, value in row._mapping.items()}


async def get_idempotency_key(session: AsyncSession, user_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    """The stored response for ``(user_id, key)``, or None."""
    return await session.get(IdempotencyKey, (user_id, key))


def add_idempotency_key(session: AsyncSession, record: IdempotencyKey) -> None:
    """Stage a stored response."""
    session.add(record)


async def delete_idempotency_key(session: AsyncSession, record: IdempotencyKey) -> None:
    """Forget one stored response (it expired)."""
    await session.delete(record)


async def purge_idempotency_keys(session: AsyncSession, older_than: datetime) -> int:
    """Delete stored responses created before ``older_than``; returns rows deleted."""
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)
