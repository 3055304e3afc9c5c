"""Task business rules: create (idempotent), read, list (cached), update, replace, delete, stats.

Every write bumps ``version`` (optimistic concurrency), writes its event to the outbox in the
same unit of work, and invalidates the owner's cached list pages after commit.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from taskhub.core.cache import ResponseCache
from taskhub.core.etag import etag_matches, strong_etag
from taskhub.core.pagination import Edge, PageParams, Slice, decode_cursor, encode_cursor
from taskhub.core.timeutil import new_id, utcnow
from taskhub.core.timezones import end_of_day
from taskhub.db.session import is_serialization_failure, on_commit, position_tag
from taskhub.tasks import events, idempotency
from taskhub.tasks import repository as task_repo
from taskhub.tasks.errors import TaskNotFound, VersionMismatch
from taskhub.tasks.models import PRIORITY_RANK, Task
from taskhub.tasks.schemas import TaskCreate, TaskQuery, TaskRead, TaskStats
from taskhub.users import repository as user_repo
from taskhub.users.models import User


def etag(task_version: int) -> str:
    """The strong ETag of a task at ``task_version`` (RFC 9110 section 8.8.3)."""
    return strong_etag(task_version)


def is_not_modified(if_none_match: str | None, task_version: int) -> bool:
    """True when ``If-None-Match`` lists the task's current ETag (weak comparison, RFC 9110 13.1.2)."""
    return etag_matches(if_none_match, etag(task_version), weak=True)


def _check_if_match(task: Task, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, etag(task.version), weak=False):
        hint = ""
        stripped = if_match.strip()
        if stripped and not stripped.startswith(('"', "W/", "*")):
            hint = ' ETags are quoted strings: send If-Match: "<version>" exactly as the ETag header shows it.'
        raise VersionMismatch(
            f"If-Match {if_match} does not match the current ETag {etag(task.version)}; "
            f"fetch the task again and retry.{hint}"
        )


def _invalidate_after_commit(session: AsyncSession, cache: ResponseCache, owner_id: uuid.UUID) -> None:
    async def _invalidate() -> None:
        await cache.invalidate(owner_id.hex)

    on_commit(session, _invalidate, key=("task-pages", owner_id))


def due_columns(due: datetime | date | None, time_zone: str) -> dict[str, Any]:
    """The stored ``due_date``, ``all_day`` and ``due_on`` of a ``due_date`` input (``DueDate``):
    a day makes an all-day task due at the end of that day in ``time_zone`` (the owner's); a
    datetime (already UTC) a timed task; None no due date (docs/api.md, "All-day tasks")."""
    if due is None:
        return {"due_date": None, "all_day": False, "due_on": None}
    if isinstance(due, datetime):
        return {"due_date": due, "all_day": False, "due_on": None}
    return {"due_date": end_of_day(due, time_zone), "all_day": True, "due_on": due}


async def _owner_time_zone(session: AsyncSession, actor: User, due: object) -> str:
    """The zone an all-day ``due`` is read in: the owner's, read in this unit of work with a share
    lock, because ``actor`` (from authentication, maybe from its cache) can predate a concurrent
    time-zone change, whose moving of the all-day tasks (``move_all_day``) would then miss this
    one. Timed and absent due dates need no zone (and no extra statement)."""
    if not isinstance(due, date) or isinstance(due, datetime):
        return actor.time_zone
    return await user_repo.time_zone_for_share(session, actor.id) or actor.time_zone


async def _with_due_columns(session: AsyncSession, actor: User, values: dict[str, Any]) -> dict[str, Any]:
    if "due_date" not in values:
        return values
    values = dict(values)
    due = values.pop("due_date")
    values.update(due_columns(due, await _owner_time_zone(session, actor, due)))
    return values


@dataclass(frozen=True, slots=True)
class CreateResult:
    """A created (or replayed) task body; ``replayed`` when it came from an earlier request."""

    task: TaskRead
    replayed: bool


async def create(
    session: AsyncSession,
    actor: User,
    data: TaskCreate,
    *,
    cache: ResponseCache,
    idempotency_key: str | None = None,
    idempotency_ttl: int = 86_400,
) -> CreateResult:
    """Create a task for ``actor``; with ``idempotency_key``, replay the first response for 24 h.

    Raises:
        IdempotencyKeyReused: same key, different body (422).
        IdempotencyKeyInFlight: a concurrent request with the same key is still running (409).
    """
    now = utcnow()
    claim: idempotency.Claim | None = None
    if idempotency_key is not None:
        claim = await idempotency.claim(session, actor.id, idempotency_key, data, ttl=idempotency_ttl, now=now)
        if claim.replay is not None:
            return CreateResult(TaskRead.model_validate(claim.replay), replayed=True)
    time_zone = await _owner_time_zone(session, actor, data.due_date)  # a replay needs no zone (nor its lock)

    task = {
        "id": new_id(),
        "owner_id": actor.id,
        "title": data.title,
        "description": data.description,
        "status": data.status,
        "priority": data.priority,
        "priority_rank": PRIORITY_RANK[data.priority],
        **due_columns(data.due_date, time_zone),
        "tags": data.tags,
        "completed_at": now if data.status == "done" else None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    read = TaskRead.model_validate(task)
    if claim is not None:
        claim.complete(read.model_dump(mode="json"))
        await session.flush()
    await task_repo.insert_with_event(session, task, events.created(task, now))
    _invalidate_after_commit(session, cache, actor.id)
    return CreateResult(read, replayed=False)


async def get_owned(session: AsyncSession, actor: User, task_id: uuid.UUID) -> Task:
    """The caller's task. Raises: TaskNotFound (also for someone else's task)."""
    task = await task_repo.get_owned(session, actor.id, task_id)
    if task is None:
        raise TaskNotFound(f"No task with id {task_id}.")
    return task


async def _apply(session: AsyncSession, task: Task, values: dict[str, Any], *, cache: ResponseCache) -> Task:
    before = events.snapshot(task)
    was_done = task.status == "done"
    for name, value in values.items():
        setattr(task, name, value)
    if "priority" in values:
        task.priority_rank = PRIORITY_RANK[task.priority]
    after = events.snapshot(task)
    changes = events.diff(before, after)
    if not changes:
        return task
    now = utcnow()
    if task.status == "done" and not was_done:
        task.completed_at = now
    elif task.status != "done" and was_done:
        task.completed_at = None
    task.updated_at = now
    try:
        await session.flush()
    except StaleDataError as exc:
        raise VersionMismatch("The task was changed by another request; fetch it again and retry.") from exc
    except DBAPIError as exc:
        if is_serialization_failure(exc):  # the same race, as a shard reports it (see the helper)
            raise VersionMismatch("The task was changed by another request; fetch it again and retry.") from exc
        raise
    kind = events.TASK_COMPLETED if (task.status == "done" and not was_done) else events.TASK_UPDATED
    events.record(session, kind, task, changes, now)
    _invalidate_after_commit(session, cache, task.owner_id)
    return task


async def update(
    session: AsyncSession,
    actor: User,
    task: Task,
    changes: dict[str, Any],
    *,
    cache: ResponseCache,
    if_match: str | None = None,
) -> Task:
    """Apply a partial update (only the fields in ``changes``); no change, no new version.

    Raises:
        VersionMismatch: ``if_match`` is stale or a concurrent write won (412).
    """
    _check_if_match(task, if_match)
    return await _apply(session, task, await _with_due_columns(session, actor, changes), cache=cache)


async def replace(
    session: AsyncSession,
    actor: User,
    task: Task,
    data: TaskCreate,
    *,
    cache: ResponseCache,
    if_match: str | None = None,
) -> Task:
    """Replace every editable field (omitted ones get their defaults). Raises: VersionMismatch."""
    _check_if_match(task, if_match)
    return await _apply(session, task, await _with_due_columns(session, actor, data.model_dump()), cache=cache)


async def delete(
    session: AsyncSession, actor: User, task: Task, *, cache: ResponseCache, if_match: str | None = None
) -> None:
    """Delete a task, only at the version that was read (a concurrent write or delete wins).

    Raises:
        VersionMismatch: ``if_match`` is stale, or the task changed since it was read.
        TaskNotFound: a concurrent request deleted it first.
    """
    _check_if_match(task, if_match)
    try:
        deleted = await task_repo.delete_task(session, task)
    except DBAPIError as exc:
        if is_serialization_failure(exc):
            raise VersionMismatch("The task was changed by another request; fetch it again and retry.") from exc
        raise
    if not deleted:
        if await task_repo.exists_owned(session, task.owner_id, task.id):
            raise VersionMismatch("The task was changed by another request; fetch it again and retry.")
        raise TaskNotFound(f"No task with id {task.id}.")
    events.record(session, events.TASK_DELETED, task, {}, utcnow())
    _invalidate_after_commit(session, cache, task.owner_id)


async def move_all_day(session: AsyncSession, owner_id: uuid.UUID, time_zone: str, *, cache: ResponseCache) -> None:
    """Recompute ``due_date`` of every all-day task of ``owner_id`` for their new ``time_zone``
    (the end of ``due_on`` there), in the caller's unit of work: each moved task gets a new
    version, ``updated_at`` and a ``task.updated`` event, like any other change of ``due_date``.

    Raises: VersionMismatch when a concurrent write changed one of them first (412).
    """
    for task in await task_repo.all_day_owned(session, owner_id):
        assert task.due_on is not None  # the all_day check constraint
        await _apply(session, task, {"due_date": end_of_day(task.due_on, time_zone)}, cache=cache)


async def delete_all_of(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """Delete every task (and idempotency record) of ``owner_id``, with no events: their account
    is being deleted in the same unit of work."""
    await task_repo.delete_all_owned(session, owner_id)


async def read_owned(session: AsyncSession, actor: User, task_id: uuid.UUID) -> TaskRead:
    """The caller's task as clients see it. Raises: TaskNotFound (also for someone else's task)."""
    row = await task_repo.read_owned(session, actor.id, task_id)
    if row is None:
        raise TaskNotFound(f"No task with id {task_id}.")
    return TaskRead.model_validate(row)


def _cursor_after(row: RowMapping, query: TaskQuery) -> str:
    name = query.sort_key.name
    value = row["priority_rank"] if name == "priority" else row[name]
    return encode_cursor(query.sort, query.sort_key, value, row["id"])


_PAGE_FIELDS = tuple(TaskRead.model_fields)


def _item(row: RowMapping) -> dict[str, Any]:
    return {name: row[name] for name in _PAGE_FIELDS}


async def list_page(
    session: AsyncSession, query: TaskQuery, paging: PageParams, *, owner_id: uuid.UUID | None
) -> bytes:
    """One page of tasks as JSON bytes shaped like :class:`TaskPage`: offset mode (``page``, with
    ``total``) or keyset mode (``cursor``). ``owner_id`` None lists every user's tasks (admin).

    Rows go straight from the database to JSON (orjson; byte-for-byte what ``TaskPage`` would
    render) without a model per row. Raises: UnprocessableEntity (bad cursor).
    """
    now = utcnow()
    limit = paging.limit
    page = paging.offset_page
    total: int | None = None
    if page is None:
        assert paging.cursor is not None
        after = decode_cursor(paging.cursor, query.sort, query.sort_key)
        rows: Sequence[RowMapping] = await task_repo.list_tasks(
            session, query, owner_id=owner_id, now=now, offset=None, after=after, limit=limit + 1
        )
    else:
        rows = await task_repo.list_tasks(
            session, query, owner_id=owner_id, now=now, offset=(page - 1) * limit, after=None, limit=limit + 1
        )
        # A separate COUNT, not a window count in the same statement: count(*) OVER () makes the
        # database read every matching row in full before the LIMIT (measured slower on SQLite, and
        # it grows with the account), while COUNT is answered from the owner's index.
        if page == 1 and len(rows) <= limit:
            total = len(rows)
        else:
            total = await task_repo.count_tasks(session, query, owner_id=owner_id, now=now)
    has_more = len(rows) > limit
    rows = rows[:limit]
    body = {
        "items": [_item(row) for row in rows],
        "limit": limit,
        "page": page,
        "total": total,
        "next_cursor": _cursor_after(rows[-1], query) if has_more and rows else None,
    }
    # default=str: asyncpg hands UUID columns back as its own UUID class, which orjson does not know.
    return orjson.dumps(body, option=orjson.OPT_UTC_Z, default=str)


async def list_slice(
    session: AsyncSession, actor: User, query: TaskQuery, *, first: int, after: str | None
) -> Slice[TaskRead]:
    """Up to ``first`` of the caller's tasks after the cursor ``after`` (from the start when None),
    in ``query``'s sort order, each with its own cursor: the keyset paging of ``GET /tasks``
    (cursors are interchangeable with its ``next_cursor``), shaped for a Relay-style connection
    (GraphQL). Not cached: the list cache keys are whole REST pages.

    ``first`` is validated by the caller (1..``MAX_LIMIT``, like ``limit``).
    Raises: UnprocessableEntity (bad cursor, ``loc`` ``["query", "cursor"]``).
    """
    decoded = decode_cursor(after, query.sort, query.sort_key) if after is not None else None
    rows = await task_repo.list_tasks(
        session, query, owner_id=actor.id, now=utcnow(), offset=None, after=decoded, limit=first + 1
    )
    edges = [Edge(TaskRead.model_validate(_item(row)), _cursor_after(row, query)) for row in rows[:first]]
    return Slice(edges, has_next=len(rows) > first)


async def list_page_json(
    session: AsyncSession, actor: User, query: TaskQuery, paging: PageParams, *, cache: ResponseCache
) -> tuple[bytes, bool]:
    """The caller's page as JSON bytes, from the per-user cache when fresh; ``(body, cache_hit)``.

    The generation is read before the database, so a page computed from pre-write data can only
    be stored under an already-superseded key (a client never reads its own stale data). With
    read replicas the key also names the read floor the page was read at (read before the
    generation, during authentication): a page read from a replica that lacks a write is stored
    under the floor from before that write, which no reader looks up once the write's response
    is out (its floor is then higher).
    """
    user_key = actor.id.hex
    # `overdue` depends on the clock, not only on writes: such pages are never cached.
    generation = await cache.generation(user_key) if query.overdue is None else None
    key = None
    if generation is not None:
        digest = hashlib.sha256(f"{query.cache_key()}|{paging.limit}|{paging.page}|{paging.cursor}".encode())
        key = f"tasks:list:{user_key}:{generation}:{position_tag(session)}{digest.hexdigest()[:32]}"
        cached = await cache.get(key)
        if cached is not None:
            return cached, True
    body = await list_page(session, query, paging, owner_id=actor.id)
    if key is not None:
        await cache.set(key, body)
    return body, False


async def stats(session: AsyncSession, actor: User) -> TaskStats:
    """Counts of the caller's tasks by status and priority, overdue, and completed in the last 7 days."""
    counts = await task_repo.stats(session, actor.id, utcnow())
    return TaskStats.model_validate(
        {
            "total": counts["total"],
            "by_status": {k: counts[k] for k in ("todo", "in_progress", "done")},
            "by_priority": {k: counts[k] for k in ("low", "medium", "high")},
            "overdue": counts["overdue"],
            "completed_last_7_days": counts["completed_last_7_days"],
        }
    )
