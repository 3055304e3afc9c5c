"""``OwnedTask`` (load-or-404 plus the owner check, written once) and the list query parser."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query
from starlette.requests import HTTPConnection

from taskhub.auth.dependencies import CurrentUser
from taskhub.context import Ctx, WriteSession, read_floor
from taskhub.core.validators import MultilineText, PlainText, UtcDatetime
from taskhub.tasks import service as task_service
from taskhub.tasks.models import Task
from taskhub.tasks.schemas import Priority, SortName, Status, TaskQuery, TaskRead, normalize_tag


async def readable_task(task_id: uuid.UUID, user: CurrentUser, ctx: Ctx, conn: HTTPConnection) -> TaskRead:
    """The caller's task ``task_id`` as clients see it, read in a read-only unit of work of its own
    (one statement; no session is kept for the rest of the request) at the caller's read floor.
    Raises: TaskNotFound (404) when missing or not theirs."""
    async with ctx.db.unit_of_work(readonly=True, floor=read_floor(conn)) as session:
        return await task_service.read_owned(session, user, task_id)


async def writable_task(task_id: uuid.UUID, user: CurrentUser, session: WriteSession) -> Task:
    """The caller's task ``task_id``, loaded in the request's write unit of work (so the change
    and its version check happen in that transaction). Raises: TaskNotFound (404)."""
    return await task_service.get_owned(session, user, task_id)


OwnedTask = Annotated[TaskRead, Depends(readable_task)]
OwnedTaskForWrite = Annotated[Task, Depends(writable_task)]


async def task_query(
    status: Annotated[list[Status] | None, Query(description="Repeatable: ?status=todo&status=in_progress")] = None,
    priority: Annotated[list[Priority] | None, Query(description="Repeatable")] = None,
    tag: Annotated[PlainText | None, Query(min_length=1, max_length=50)] = None,
    q: Annotated[
        MultilineText | None, Query(max_length=200, description="Search title and description; empty = all")
    ] = None,
    due_before: Annotated[UtcDatetime | None, Query(description="RFC 3339 with offset")] = None,
    due_after: Annotated[UtcDatetime | None, Query(description="RFC 3339 with offset")] = None,
    overdue: Annotated[bool | None, Query(description="true: past due and not done")] = None,
    sort: Annotated[SortName, Query()] = "-created_at",
) -> TaskQuery:
    """Parse the list filters and sort; out-of-range values are 422 (never clamped).

    ``async`` only so that FastAPI calls it on the event loop instead of the thread pool.
    """
    return TaskQuery(
        status=status,
        priority=priority,
        tag=normalize_tag(tag) if tag is not None else None,
        q=q or None,
        due_before=due_before,
        due_after=due_after,
        overdue=overdue,
        sort=sort,
    )


TaskQueryDep = Annotated[TaskQuery, Depends(task_query)]
