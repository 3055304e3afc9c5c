"""Per-user daily counters from task events, and the history endpoint's data.

Days are UTC calendar days of the event's ``occurred_at``. ``created`` counts ``task.created``;
``completed`` counts ``task.completed`` and tasks created already done; ``completion_seconds``
sums the time from creation to completion of the tasks completed that day (average =
``completion_seconds / completed``; a task whose creation predates the analytics adds 0).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.analytics.models import DailyTaskStats, TaskStart
from taskhub.analytics.schemas import DayStats, StatsHistory
from taskhub.config import Settings
from taskhub.core.timeutil import to_utc
from taskhub.db.upsert import insert_for
from taskhub.events.dispatch import Event


def _at(event: Event) -> datetime:
    return to_utc(datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00")))


async def _add(
    session: AsyncSession, user_id: uuid.UUID, day: date, *, created: int = 0, completed: int = 0, seconds: int = 0
) -> None:
    table = DailyTaskStats.__table__
    stmt = insert_for(session, DailyTaskStats).values(
        user_id=user_id, day=day, created=created, completed=completed, completion_seconds=seconds
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id", "day"],
        set_={
            "created": table.c.created + created,
            "completed": table.c.completed + completed,
            "completion_seconds": table.c.completion_seconds + seconds,
        },
    )
    await session.execute(stmt)


async def on_task_event(session: AsyncSession, event: Event, settings: Settings) -> None:
    """Handler of ``task.created``, ``task.completed`` and ``task.deleted``."""
    user_id = uuid.UUID(str(event["owner_id"]))
    task_id = uuid.UUID(str(event["task_id"]))
    at = _at(event)
    kind = event["type"]
    if kind == "task.created":
        done = event.get("changes", {}).get("status") == "done"
        await _add(session, user_id, at.date(), created=1, completed=int(done))
        if not done:
            start = insert_for(session, TaskStart).values(task_id=task_id, created_at=at).on_conflict_do_nothing()
            await session.execute(start)
    elif kind == "task.completed":
        started = (await session.execute(select(TaskStart.created_at).where(TaskStart.task_id == task_id))).scalar()
        seconds = max(0, round((at - started).total_seconds())) if started is not None else 0
        await _add(session, user_id, at.date(), completed=1, seconds=seconds)
        # a reopened and completed-again task counts its time from this completion
        await session.execute(delete(TaskStart).where(TaskStart.task_id == task_id))
        await session.execute(
            insert_for(session, TaskStart).values(task_id=task_id, created_at=at).on_conflict_do_nothing()
        )
    elif kind == "task.deleted":
        await session.execute(delete(TaskStart).where(TaskStart.task_id == task_id))


async def history(session: AsyncSession, user_id: uuid.UUID, days: int, today: date) -> StatsHistory:
    """The last ``days`` UTC days up to ``today``, oldest first, days without activity as zeros."""
    first = today - timedelta(days=days - 1)
    stmt = select(DailyTaskStats).where(DailyTaskStats.user_id == user_id, DailyTaskStats.day >= first)
    rows = {r.day: r for r in (await session.execute(stmt)).scalars()}
    out: list[DayStats] = []
    for i in range(days):
        day = first + timedelta(days=i)
        row = rows.get(day)
        completed = row.completed if row else 0
        seconds = row.completion_seconds if row else 0
        out.append(
            DayStats(
                day=day,
                created=row.created if row else 0,
                completed=completed,
                avg_completion_s=round(seconds / completed, 1) if completed else None,
            )
        )
    return StatsHistory(days=days, items=out)
