"""The GraphQL schema: queries and mutations over the same services as REST.

Every resolver authenticates the caller (:meth:`GraphQLContext.viewer`), validates its arguments
with the REST models (``TaskCreate``, ``TaskUpdate``, the list query's limits) and calls the
tasks, users and notifications services — the same rules, events (outbox rows), ETag checks
(``expectedVersion`` is the ETag's version) and idempotency records (``idempotencyKey`` is the
``Idempotency-Key``) as the REST endpoints. :func:`build_schema` adds the limits and the error
mapping; ``taskhub graphql-schema`` prints :func:`sdl`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from pydantic import BaseModel, ConfigDict, Field
from strawberry.extensions import DisableIntrospection, MaxTokensLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, Info

from graphql import GraphQLError
from taskhub.config import Settings
from taskhub.core.errors import UnprocessableEntity, field_error
from taskhub.core.pagination import MAX_LIMIT
from taskhub.core.validators import MultilineText, PlainText, UtcDatetime, header_token
from taskhub.graphql.context import GraphQLContext
from taskhub.graphql.errors import ProblemErrors, is_unexpected, log, rename_locs, validate
from taskhub.graphql.limits import QueryCostLimiter
from taskhub.graphql.types import (
    DATETIME,
    CreateTaskInput,
    CreateTaskPayload,
    DeleteTaskPayload,
    Notification,
    NotificationConnection,
    NotificationEdge,
    PageInfo,
    Stats,
    Task,
    TaskConnection,
    TaskEdge,
    TaskPayload,
    TaskPriority,
    TaskSort,
    TaskStatus,
    UpdateTaskInput,
    User,
)
from taskhub.notifications import service as notification_service
from taskhub.tasks import service as task_service
from taskhub.tasks.errors import VersionMismatch
from taskhub.tasks.idempotency import MAX_KEY_LENGTH
from taskhub.tasks.schemas import TaskCreate, TaskQuery, TaskRead, TaskUpdate, normalize_tag
from taskhub.users.models import User as UserModel

MAX_TOKENS = 5_000
"""Largest document, in lexical tokens, the parser reads (GraphiQL's introspection query is ~250)."""
DEFAULT_FIRST = 20
"""Page size when ``first`` is omitted (as ``limit`` of ``GET /tasks``)."""

ContextInfo = Info[GraphQLContext, None]
_CURSOR_LOC: dict[tuple[str, ...], list[str]] = {("query", "cursor"): ["after"]}
_KEY_LOC: dict[tuple[str, ...], list[str]] = {("header", "Idempotency-Key"): ["idempotencyKey"]}


class TaskListArguments(BaseModel):
    """The limits ``GET /tasks`` puts on its query parameters, for the ``tasks`` field."""

    model_config = ConfigDict(extra="forbid")

    first: Annotated[int, Field(ge=1, le=MAX_LIMIT)]
    tag: Annotated[PlainText, Field(min_length=1, max_length=50)] | None = None
    q: Annotated[MultilineText, Field(max_length=200)] | None = None
    due_before: UtcDatetime | None = None
    due_after: UtcDatetime | None = None


class PageArguments(BaseModel):
    """``first`` of a connection: 1..100, like ``limit``."""

    first: Annotated[int, Field(ge=1, le=MAX_LIMIT)]


def _set(**values: Any) -> dict[str, Any]:
    """The arguments a client sent (``UNSET`` ones dropped), enums as their REST values; an input
    object's fields are ``vars(input)`` (the inputs name their fields as the REST models do)."""
    return {
        name: value.value if isinstance(value, Enum) else value
        for name, value in values.items()
        if value is not strawberry.UNSET
    }


def _task_id(raw: strawberry.ID, *, loc: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise UnprocessableEntity(
            f"Invalid input: {loc}", errors=[field_error([loc], "must be a UUID", "uuid_parsing")]
        ) from None


def _if_match(expected_version: int | None) -> str | None:
    return task_service.etag(expected_version) if expected_version is not None else None


@contextmanager
def _version_in_words(expected: int | None, current: int) -> Iterator[None]:
    """Say a stale ``expectedVersion`` in GraphQL's words (the service speaks of If-Match and ETags);
    the problem, and the rule that raised it, stay the service's."""
    try:
        yield
    except VersionMismatch as exc:
        if expected is not None and expected != current:
            raise VersionMismatch(
                f"expectedVersion {expected} is not the task's current version {current}; fetch it again and retry."
            ) from exc
        raise


def _page_info(edges: list[Any], has_next: bool) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        end_cursor=edges[-1].cursor if edges else None,
        has_previous_page=False,
        start_cursor=edges[0].cursor if edges else None,
    )


def _idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    problem = None
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        problem = f"must be 1..{MAX_KEY_LENGTH} characters"
    else:
        try:
            header_token(key)
        except ValueError as exc:
            problem = str(exc)
    if problem is not None:
        raise UnprocessableEntity("Invalid input: idempotencyKey", errors=[field_error(["idempotencyKey"], problem)])
    return key


@strawberry.type
class Query:
    @strawberry.field(description="The authenticated caller.")
    async def viewer(self, info: ContextInfo) -> User:
        """The caller's account. Raises: Unauthorized."""
        return User.of(await info.context.viewer())

    @strawberry.field(description="The viewer's tasks, filtered and sorted, paged forward with first/after.")
    async def tasks(
        self,
        info: ContextInfo,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        status: list[TaskStatus] | None = None,
        priority: list[TaskPriority] | None = None,
        tag: str | None = None,
        q: str | None = None,
        due_before: datetime | None = None,
        due_after: datetime | None = None,
        overdue: bool | None = None,
        sort: TaskSort = TaskSort.CREATED_AT_DESC,
    ) -> TaskConnection:
        """A slice of the caller's tasks (``GET /tasks`` keyset paging; its cursors work here).

        Raises: Unauthorized; UnprocessableEntity (``first`` outside 1..100, a bad ``after`` cursor
        or one made for another sort, a tag or search text out of range).
        """
        user = await info.context.viewer()
        args = validate(
            TaskListArguments,
            {"first": first, "due_before": due_before, "due_after": due_after}
            | ({"tag": tag} if tag is not None else {})
            | ({"q": q} if q is not None else {}),
        )
        query = TaskQuery(
            status=[s.value for s in status] if status else None,
            priority=[p.value for p in priority] if priority else None,
            tag=normalize_tag(args.tag) if args.tag is not None else None,
            q=args.q or None,
            due_before=args.due_before,
            due_after=args.due_after,
            overdue=overdue,
            sort=sort.value,
        )
        try:
            async with info.context.read() as session:
                page = await task_service.list_slice(session, user, query, first=args.first, after=after)
        except UnprocessableEntity as exc:
            raise rename_locs(exc, _CURSOR_LOC) from None
        edges = [TaskEdge(cursor=edge.cursor, node=Task.of(edge.node)) for edge in page.edges]
        return TaskConnection(edges=edges, page_info=_page_info(edges, page.has_next))

    @strawberry.field(description="One of the viewer's tasks; someone else's is not found, like a missing one.")
    async def task(self, info: ContextInfo, id: strawberry.ID) -> Task | None:
        """The caller's task ``id``. Raises: Unauthorized; TaskNotFound; UnprocessableEntity (not a UUID)."""
        user = await info.context.viewer()
        task_id = _task_id(id)
        async with info.context.read() as session:
            return Task.of(await task_service.read_owned(session, user, task_id))

    @strawberry.field(description="Counts by status and priority, overdue, completed in the last 7 days.")
    async def stats(self, info: ContextInfo) -> Stats:
        """The caller's task stats. Raises: Unauthorized."""
        user = await info.context.viewer()
        async with info.context.read() as session:
            return Stats.of(await task_service.stats(session, user))

    @strawberry.field(description="The viewer's notifications, newest first.")
    async def notifications(
        self, info: ContextInfo, first: int = DEFAULT_FIRST, after: str | None = None, unread: bool = False
    ) -> NotificationConnection:
        """A slice of the caller's notifications. Raises: Unauthorized; UnprocessableEntity."""
        user = await info.context.viewer()
        args = validate(PageArguments, {"first": first})
        try:
            async with info.context.read() as session:
                page = await notification_service.inbox_slice(
                    session, user.id, first=args.first, after=after, unread_only=unread
                )
        except UnprocessableEntity as exc:
            raise rename_locs(exc, _CURSOR_LOC) from None
        edges = [NotificationEdge(cursor=edge.cursor, node=Notification.of(edge.node)) for edge in page.edges]
        return NotificationConnection(edges=edges, page_info=_page_info(edges, page.has_next))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Create a task (POST /api/v1/tasks). idempotencyKey replays the first result for 24 h."
    )
    async def create_task(
        self, info: ContextInfo, input: CreateTaskInput, idempotency_key: str | None = None
    ) -> CreateTaskPayload | None:
        """Raises: Unauthorized; UnprocessableEntity (input, or the key reused with another input);
        IdempotencyKeyInFlight (the same key is being used right now)."""
        user = await info.context.viewer()
        key = _idempotency_key(idempotency_key)
        data = validate(
            TaskCreate,
            _set(**vars(input)),
            loc=["input"],
        )
        app = info.context.app
        try:
            async with info.context.write() as session:
                result = await task_service.create(
                    session,
                    user,
                    data,
                    cache=app.cache,
                    idempotency_key=key,
                    idempotency_ttl=app.settings.idempotency_ttl,
                )
        except UnprocessableEntity as exc:
            raise rename_locs(exc, _KEY_LOC) from None
        return CreateTaskPayload(task=Task.of(result.task), replayed=result.replayed)

    @strawberry.mutation(description="Change the fields given (PATCH /api/v1/tasks/{id}).")
    async def update_task(
        self, info: ContextInfo, id: strawberry.ID, input: UpdateTaskInput, expected_version: int | None = None
    ) -> TaskPayload | None:
        """Raises: Unauthorized; TaskNotFound; UnprocessableEntity; VersionMismatch (``expectedVersion``
        is not the current version, or a concurrent write won)."""
        user = await info.context.viewer()
        task_id = _task_id(id)
        changes = validate(
            TaskUpdate,
            _set(**vars(input)),
            loc=["input"],
        ).model_dump(exclude_unset=True)
        return await _update(info, actor=user, task_id=task_id, changes=changes, expected_version=expected_version)

    @strawberry.mutation(description="Mark the task done (PATCH with status done).")
    async def complete_task(
        self, info: ContextInfo, id: strawberry.ID, expected_version: int | None = None
    ) -> TaskPayload | None:
        """Raises: Unauthorized; TaskNotFound; VersionMismatch."""
        user = await info.context.viewer()
        task_id = _task_id(id)
        changes = TaskUpdate(status="done").model_dump(exclude_unset=True)
        return await _update(info, actor=user, task_id=task_id, changes=changes, expected_version=expected_version)

    @strawberry.mutation(description="Delete the task (DELETE /api/v1/tasks/{id}).")
    async def delete_task(
        self, info: ContextInfo, id: strawberry.ID, expected_version: int | None = None
    ) -> DeleteTaskPayload | None:
        """Raises: Unauthorized; TaskNotFound (also a second delete); VersionMismatch."""
        user = await info.context.viewer()
        task_id = _task_id(id)
        async with info.context.write() as session:
            task = await task_service.get_owned(session, user, task_id)
            with _version_in_words(expected_version, task.version):
                await task_service.delete(
                    session, user, task, cache=info.context.app.cache, if_match=_if_match(expected_version)
                )
        return DeleteTaskPayload(deleted_id=strawberry.ID(str(task_id)))


async def _update(
    info: ContextInfo, *, actor: UserModel, task_id: uuid.UUID, changes: dict[str, Any], expected_version: int | None
) -> TaskPayload:
    async with info.context.write() as session:
        task = await task_service.get_owned(session, actor, task_id)
        with _version_in_words(expected_version, task.version):
            updated = await task_service.update(
                session, actor, task, changes, cache=info.context.app.cache, if_match=_if_match(expected_version)
            )
        read = TaskRead.model_validate(updated)
    return TaskPayload(task=Task.of(read))


class TaskhubSchema(strawberry.Schema):
    """A schema that logs only unexpected errors (expected ones are answers, not incidents)."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Log resolver errors no problem type describes, with their traceback."""
        for error in errors:
            if is_unexpected(error):
                log.error("graphql_unexpected_error", path=error.path, exc_info=error.original_error)


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the limits of ``settings`` (depth, cost, introspection) and the problem
    mapping of errors. The SDL does not depend on ``settings``."""
    # Factories, not instances: strawberry makes fresh extensions per request from them.
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        lambda: QueryCostLimiter(max_cost=settings.graphql_max_cost),
        ProblemErrors,
    ]
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    return TaskhubSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map={datetime: DATETIME}),
    )


def sdl() -> str:
    """The schema in SDL (``taskhub graphql-schema``; committed as ``docs/schema.graphql``)."""
    return build_schema(Settings()).as_str() + "\n"
