"""``/admin/tasks``: every user's tasks (role ``admin``; others get 403). Part of the tasks service
(``docs/architecture.md``, "Services"), mounted beside ``/admin/users`` under one ``/admin`` prefix."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from taskhub.auth.dependencies import AdminUser
from taskhub.context import ReadSession
from taskhub.core.openapi import problem_responses
from taskhub.core.pagination import PageParamsDep
from taskhub.tasks import service as task_service
from taskhub.tasks.dependencies import TaskQueryDep
from taskhub.tasks.schemas import TaskPage

router = APIRouter(prefix="/admin", tags=["admin"], responses=problem_responses(403))


@router.get("/tasks", response_model=TaskPage)
async def list_all_tasks(
    query: TaskQueryDep,
    paging: PageParamsDep,
    admin: AdminUser,
    session: ReadSession,
    owner_id: Annotated[uuid.UUID | None, Query(description="Only this user's tasks")] = None,
) -> Response:
    """Every user's tasks: the same query as ``/tasks`` plus ``owner_id``."""
    query = query.model_copy(update={"owner_id": owner_id})
    return Response(await task_service.list_page(session, query, paging, owner_id=None), media_type="application/json")
