"""``OwnedTask`` (load-or-404 plus the owner check, written once) and the list query parser."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query

from taskhub.auth.dependencies import CurrentUser
from taskhub.core.validators import MAX_PAGE, NoNulStr, UtcDatetime
from taskhub.db.session import SessionDep
from taskhub.tasks import service as task_service
from taskhub.tasks.models import Task
from taskhub.tasks.schemas import Priority, SortKey, Status, TaskQuery


async def owned_task(task_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Task:
    """The caller's task ``task_id``. Raises: TaskNotFound (404) when missing or not theirs."""
    return await task_service.get_owned(session, user, task_id)


OwnedTask = Annotated[Task, Depends(owned_task)]


async def task_query(
    status: Annotated[list[Status] | None, Query(description="Repeatable: ?status=todo&status=done")] = None,
    priority: Annotated[list[Priority] | None, Query(description="Repeatable")] = None,
    tag: Annotated[NoNulStr | None, Query(min_length=1, max_length=50)] = None,
    q: Annotated[
        NoNulStr | None, Query(max_length=200, description="Search title and description; empty = all")
    ] = None,
    due_before: Annotated[UtcDatetime | None, Query(description="RFC 3339 with offset")] = None,
    due_after: Annotated[UtcDatetime | None, Query(description="RFC 3339 with offset")] = None,
    overdue: Annotated[bool | None, Query(description="true: past due and not done")] = None,
    sort: Annotated[SortKey, Query()] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[int | None, Query(ge=1, le=MAX_PAGE, description="Offset paging; returns total")] = None,
    cursor: Annotated[str | None, Query(max_length=1000, description="Keyset paging from next_cursor")] = None,
) -> TaskQuery:
    """Parse the list query; out-of-range values are 422 (never clamped).

    ``async`` only so that FastAPI calls it on the event loop instead of the thread pool.
    """
    return TaskQuery(
        status=status,
        priority=priority,
        tag=tag,
        q=q or None,
        due_before=due_before,
        due_after=due_after,
        overdue=overdue,
        sort=sort,
        limit=limit,
        page=page,
        cursor=cursor,
    )


TaskQueryDep = Annotated[TaskQuery, Depends(task_query)]
