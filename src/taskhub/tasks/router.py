"""``/tasks``: the caller's tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator

from taskhub.auth.dependencies import CurrentUser
from taskhub.context import Ctx, ReadSession, WriteSession
from taskhub.core.openapi import headers, problem_responses
from taskhub.core.pagination import PageParamsDep
from taskhub.core.responses import model_response
from taskhub.core.validators import header_token
from taskhub.tasks import quickadd
from taskhub.tasks import service as task_service
from taskhub.tasks.dependencies import OwnedTask, OwnedTaskForWrite, TaskQueryDep
from taskhub.tasks.idempotency import MAX_KEY_LENGTH
from taskhub.tasks.schemas import (
    QuickAddRequest,
    QuickAddResult,
    TaskCreate,
    TaskPage,
    TaskRead,
    TaskReplace,
    TaskStats,
    TaskUpdate,
)
from taskhub.urls import api_path

router = APIRouter(prefix="/tasks", tags=["tasks"])
# OpenAPI links: what a client (and Schemathesis' stateful tests) can do with a task it got back.
_BY_ID = {"task_id": "$response.body#/id"}
_WRITE_LINKS = {
    "update": {"operationId": "update_task", "parameters": {**_BY_ID, "header.If-Match": "$response.header.ETag"}},
    "replace": {"operationId": "replace_task", "parameters": {**_BY_ID, "header.If-Match": "$response.header.ETag"}},
    # No If-Match here: the fuzzer sends none (204) or one of its own (412), both documented paths.
    "delete": {"operationId": "delete_task", "parameters": _BY_ID},
}
_TASK_LINKS = {"get": {"operationId": "get_task", "parameters": _BY_ID}, **_WRITE_LINKS}
_TASK_RESPONSE: dict[int | str, Any] = {200: {"headers": headers("ETag"), "links": _TASK_LINKS}}
IfMatch = Annotated[str | None, Header(alias="If-Match")]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH, description="Replays the first response"),
    AfterValidator(header_token),
]


def _task_response(read: TaskRead, *, status_code: int = 200, location: bool = False) -> Response:
    headers = {"ETag": task_service.etag(read.version)}
    if location:
        headers["Location"] = api_path(f"/tasks/{read.id}")
    return model_response(read, status_code=status_code, headers=headers)


@router.post(
    "",
    status_code=201,
    response_model=TaskRead,
    responses={
        201: {
            "headers": {**headers("Location", "ETag"), **headers("Idempotent-Replayed", required=False)},
            "links": _TASK_LINKS,
        },
        **problem_responses(409, descriptions={409: "A request with this Idempotency-Key is in progress"}),
    },
)
async def create_task(
    body: TaskCreate, user: CurrentUser, session: WriteSession, ctx: Ctx, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Create a task. With ``Idempotency-Key``, a retry returns the first response (24 h)."""
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


@router.get("", response_model=TaskPage, responses={200: {"headers": headers("X-Cache")}})
async def list_tasks(
    query: TaskQueryDep, paging: PageParamsDep, user: CurrentUser, session: ReadSession, ctx: Ctx
) -> Response:
    """The caller's tasks, filtered, sorted (ties by id) and paged (offset or keyset)."""
    body, hit = await task_service.list_page_json(session, user, query, paging, cache=ctx.cache)
    return Response(body, media_type="application/json", headers={"X-Cache": "HIT" if hit else "MISS"})


@router.get("/stats", response_model=TaskStats)
async def task_stats(user: CurrentUser, session: ReadSession) -> Response:
    """Counts by status and priority, overdue, and completed in the last 7 days."""
    return model_response(await task_service.stats(session, user))


@router.post("/parse", response_model=QuickAddResult)
async def parse_task(body: QuickAddRequest, user: CurrentUser) -> Response:
    """Read one line of quick-add text (``Call Ann tomorrow 5pm !high #family``) into task fields,
    relative to now in the caller's ``time_zone``; nothing is written. Send the result to
    ``POST /tasks`` (``due_date``: ``due_on`` when ``all_day``, else ``due_date``)."""
    parsed = await run_in_threadpool(quickadd.parse, body.text, user.time_zone, quickadd.clock())
    return model_response(parsed)


@router.get(
    "/{task_id}",
    response_model=TaskRead,
    responses={
        **_TASK_RESPONSE,
        304: {"description": "Not modified (If-None-Match)", "headers": headers("ETag")},
        **problem_responses(404),
    },
)
async def get_task(
    task: OwnedTask, if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None
) -> Response:
    """One task, with its ``ETag``; ``If-None-Match`` with the current ETag answers 304."""
    if task_service.is_not_modified(if_none_match, task.version):
        return Response(status_code=304, headers={"ETag": task_service.etag(task.version)})
    return _task_response(task)


@router.patch("/{task_id}", response_model=TaskRead, responses={**_TASK_RESPONSE, **problem_responses(404, 412)})
async def update_task(
    body: TaskUpdate,
    task: OwnedTaskForWrite,
    user: CurrentUser,
    session: WriteSession,
    ctx: Ctx,
    if_match: IfMatch = None,
) -> Response:
    """Change the fields sent; ``If-Match`` with a stale ETag answers 412 and changes nothing."""
    changes = body.model_dump(exclude_unset=True)
    updated = await task_service.update(session, user, task, changes, cache=ctx.cache, if_match=if_match)
    return _task_response(TaskRead.model_validate(updated))


@router.put("/{task_id}", response_model=TaskRead, responses={**_TASK_RESPONSE, **problem_responses(404, 412)})
async def replace_task(
    body: TaskReplace,
    task: OwnedTaskForWrite,
    user: CurrentUser,
    session: WriteSession,
    ctx: Ctx,
    if_match: IfMatch = None,
) -> Response:
    """Replace the task; omitted fields get their defaults."""
    updated = await task_service.replace(session, user, task, body, cache=ctx.cache, if_match=if_match)
    return _task_response(TaskRead.model_validate(updated))


@router.delete("/{task_id}", status_code=204, responses=problem_responses(404, 412))
async def delete_task(
    task: OwnedTaskForWrite, user: CurrentUser, session: WriteSession, ctx: Ctx, if_match: IfMatch = None
) -> Response:
    """Delete the task; a second delete answers 404."""
    await task_service.delete(session, user, task, cache=ctx.cache, if_match=if_match)
    return Response(status_code=204)
