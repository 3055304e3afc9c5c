"""``/tasks``: the caller's tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from taskhub.auth.dependencies import CurrentUser
from taskhub.context import Ctx
from taskhub.core.errors import UnprocessableEntity, field_error
from taskhub.core.responses import model_response
from taskhub.db.session import SessionDep
from taskhub.tasks import service as task_service
from taskhub.tasks.dependencies import OwnedTask, TaskQueryDep
from taskhub.tasks.schemas import TaskCreate, TaskPage, TaskRead, TaskReplace, TaskStats, TaskUpdate

router = APIRouter(prefix="/tasks", tags=["tasks"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _task_response(read: TaskRead, *, status_code: int = 200, location: bool = False) -> Response:
    headers = {"ETag": task_service.etag(read.version)}
    if location:
        headers["Location"] = f"/api/v1/tasks/{read.id}"
    return model_response(read, status_code=status_code, headers=headers)


@router.post("", status_code=201, response_model=TaskRead)
async def create_task(
    body: TaskCreate,
    user: CurrentUser,
    session: SessionDep,
    ctx: Ctx,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Create a task. With ``Idempotency-Key``, a retry returns the first response (24 h)."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise UnprocessableEntity(
            "Idempotency-Key must be 1..255 characters.",
            errors=[field_error(["header", "Idempotency-Key"], "must be 1..255 characters")],
        )
    result = await task_service.create(
        session,
        user,
        body,
        cache=ctx.cache,
        idempotency_key=idempotency_key,
        idempotency_ttl=ctx.settings.idempotency_ttl,
    )
    response = _task_response(result.task, status_code=201, location=True)
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("", response_model=TaskPage)
async def list_tasks(query: TaskQueryDep, user: CurrentUser, session: SessionDep, ctx: Ctx) -> Response:
    """The caller's tasks, filtered, sorted (ties by id) and paged (offset or keyset)."""
    body, hit = await task_service.list_page_json(session, user, query, cache=ctx.cache, ttl=ctx.settings.cache_ttl)
    return Response(body, media_type="application/json", headers={"X-Cache": "HIT" if hit else "MISS"})


@router.get("/stats", response_model=TaskStats)
async def task_stats(user: CurrentUser, session: SessionDep) -> Response:
    """Counts by status and priority, overdue, and completed in the last 7 days."""
    return model_response(await task_service.stats(session, user))


@router.get("/{task_id}", response_model=TaskRead, responses={304: {"description": "Not modified"}})
async def get_task(
    task: OwnedTask,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """One task, with its ``ETag``; ``If-None-Match`` with the current ETag answers 304."""
    if if_none_match is not None and task_service.etag_matches(if_none_match, task.version, weak=True):
        return Response(status_code=304, headers={"ETag": task_service.etag(task.version)})
    return _task_response(TaskRead.model_validate(task))


@router.patch("/{task_id}", response_model=TaskRead)
async def update_task(
    body: TaskUpdate, task: OwnedTask, user: CurrentUser, session: SessionDep, ctx: Ctx, if_match: IfMatch = None
) -> Response:
    """Change the fields sent; ``If-Match`` with a stale ETag answers 412 and changes nothing."""
    changes = body.model_dump(exclude_unset=True)
    updated = await task_service.update(session, user, task, changes, cache=ctx.cache, if_match=if_match)
    return _task_response(TaskRead.model_validate(updated))


@router.put("/{task_id}", response_model=TaskRead)
async def replace_task(
    body: TaskReplace, task: OwnedTask, user: CurrentUser, session: SessionDep, ctx: Ctx, if_match: IfMatch = None
) -> Response:
    """Replace the task; omitted fields get their defaults."""
    updated = await task_service.replace(session, user, task, body, cache=ctx.cache, if_match=if_match)
    return _task_response(TaskRead.model_validate(updated))


@router.delete("/{task_id}", status_code=204)
async def delete_task(
    request: Request, task: OwnedTask, user: CurrentUser, session: SessionDep, ctx: Ctx, if_match: IfMatch = None
) -> Response:
    """Delete the task; a second delete answers 404."""
    await task_service.delete(session, user, task, cache=ctx.cache, if_match=if_match)
    return Response(status_code=204)
