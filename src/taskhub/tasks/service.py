"""Task business rules: create (idempotent), read, list (cached), update, replace, delete, stats.

Every write bumps ``version`` (optimistic concurrency), writes its event to the outbox in the
same unit of work, and invalidates the owner's cached list pages after commit.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from taskhub.core.cache import ResponseCache
from taskhub.core.errors import UnprocessableEntity, field_error
from taskhub.core.pagination import decode_cursor, encode_cursor
from taskhub.core.timeutil import new_id, to_utc, utcnow
from taskhub.db.session import on_commit
from taskhub.tasks import events
from taskhub.tasks import repository as task_repo
from taskhub.tasks.errors import IdempotencyKeyInFlight, IdempotencyKeyReused, TaskNotFound, VersionMismatch
from taskhub.tasks.models import PRIORITY_RANK, IdempotencyKey, Task
from taskhub.tasks.schemas import TaskCreate, TaskPage, TaskQuery, TaskRead, TaskStats
from taskhub.users.models import User


def etag(task_version: int) -> str:
    """The strong ETag of a task at ``task_version`` (RFC 9110 section 8.8.3)."""
    return f'"{task_version}"'


def etag_matches(header: str, version: int, *, weak: bool = False) -> bool:
    """True when an ``If-Match``/``If-None-Match`` value lists the current ETag (or is ``*``).

    ``If-Match`` uses the strong comparison (a ``W/`` validator never matches) and
    ``If-None-Match`` the weak one (``weak=True``), as RFC 9110 sections 13.1.1 and 13.1.2 require.
    """
    current = etag(version)
    for candidate in header.split(","):
        candidate = candidate.strip()
        if weak:
            candidate = candidate.removeprefix("W/")
        if candidate in ("*", current):
            return True
    return False


def _check_if_match(task: Task, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, task.version):
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

    on_commit(session, _invalidate)


def _request_hash(data: TaskCreate) -> str:
    return hashlib.sha256(orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


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
    record: IdempotencyKey | None = None
    if idempotency_key is not None:
        request_hash = _request_hash(data)
        stored = await task_repo.get_idempotency_key(session, actor.id, idempotency_key)
        if stored is not None and to_utc(stored.created_at) > now - timedelta(seconds=idempotency_ttl):
            if stored.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request body.",
                    errors=[field_error(["header", "Idempotency-Key"], "key reused with a different body")],
                )
            return CreateResult(TaskRead.model_validate(stored.response), replayed=True)
        if stored is not None:
            await task_repo.delete_idempotency_key(session, stored)
            await session.flush()
        record = IdempotencyKey(
            user_id=actor.id,
            key=idempotency_key,
            request_hash=request_hash,
            status_code=201,
            response={},
            created_at=now,
        )
        task_repo.add_idempotency_key(session, record)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise IdempotencyKeyInFlight(
                "Another request with this Idempotency-Key is in progress; retry shortly."
            ) from exc

    # Every column is set here (id and the first version included), so the task, its outbox event
    # and the idempotency record go to the database in one flush instead of two.
    task = Task(
        id=new_id(),
        owner_id=actor.id,
        title=data.title,
        description=data.description,
        status=data.status,
        priority=data.priority,
        priority_rank=PRIORITY_RANK[data.priority],
        due_date=data.due_date,
        tags=data.tags,
        completed_at=now if data.status == "done" else None,
        created_at=now,
        updated_at=now,
        version=1,
    )
    task_repo.add(session, task)
    events.record(session, events.TASK_CREATED, task, events.snapshot(task), now)
    read = TaskRead.model_validate(task)
    if record is not None:
        record.response = read.model_dump(mode="json")
    await session.flush()
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
    return await _apply(session, task, changes, cache=cache)


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
    return await _apply(session, task, data.model_dump(), cache=cache)


async def delete(
    session: AsyncSession, actor: User, task: Task, *, cache: ResponseCache, if_match: str | None = None
) -> None:
    """Delete a task, only at the version that was read (a concurrent write or delete wins).

    Raises:
        VersionMismatch: ``if_match`` is stale, or the task changed since it was read.
        TaskNotFound: a concurrent request deleted it first.
    """
    _check_if_match(task, if_match)
    if not await task_repo.delete_task(session, task):
        if await task_repo.exists_owned(session, task.owner_id, task.id):
            raise VersionMismatch("The task was changed by another request; fetch it again and retry.")
        raise TaskNotFound(f"No task with id {task.id}.")
    events.record(session, events.TASK_DELETED, task, {}, utcnow())
    _invalidate_after_commit(session, cache, task.owner_id)


def _validate_query(query: TaskQuery) -> None:
    if query.page is not None and query.cursor is not None:
        raise UnprocessableEntity(
            "Use either page or cursor, not both.",
            errors=[field_error(["query", "cursor"], "cannot be combined with page")],
        )


def _decode_after(query: TaskQuery) -> tuple[Any, uuid.UUID] | None:
    if query.cursor is None:
        return None
    key = decode_cursor(query.cursor, query.sort)
    try:
        last_id = uuid.UUID(str(key["id"]))
        raw = key.get("v")
        name = query.sort.lstrip("-")
        value: Any
        if name == "priority":
            value = int(raw) if raw is not None else None
            if value not in (1, 2, 3):
                raise ValueError("priority cursor needs a rank of 1..3")
        elif raw is None:
            if name != "due_date":
                raise ValueError("cursor needs a value")
            value = None
        else:
            value = to_utc(datetime.fromisoformat(str(raw)))
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise UnprocessableEntity(
            "The cursor is not valid.", errors=[field_error(["query", "cursor"], "invalid cursor")]
        ) from exc
    return value, last_id


def _cursor_for(task: Task, sort: str) -> str:
    value = task_repo.sort_value(task, sort)
    if isinstance(value, datetime):
        value = to_utc(value).isoformat()
    return encode_cursor(sort, {"v": value, "id": str(task.id)})


async def list_page(session: AsyncSession, query: TaskQuery, *, owner_id: uuid.UUID | None) -> TaskPage:
    """One page of tasks: offset mode (``page``, with ``total``) or keyset mode (``cursor``).

    ``owner_id`` None lists every user's tasks (admin). Raises: UnprocessableEntity (bad cursor,
    page and cursor together).
    """
    _validate_query(query)
    now = utcnow()
    limit = query.limit
    after = _decode_after(query)
    if after is not None:
        rows: Sequence[Task] = await task_repo.list_tasks(
            session, query, owner_id=owner_id, now=now, offset=None, after=after, limit=limit + 1
        )
        page, total = None, None
    else:
        page = query.page or 1
        rows = await task_repo.list_tasks(
            session, query, owner_id=owner_id, now=now, offset=(page - 1) * limit, after=None, limit=limit + 1
        )
        if page == 1 and len(rows) <= limit:
            total = len(rows)
        else:
            total = await task_repo.count_tasks(session, query, owner_id=owner_id, now=now)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _cursor_for(rows[-1], query.sort) if has_more and rows else None
    return TaskPage(
        items=[TaskRead.model_validate(t) for t in rows],
        limit=limit,
        page=page,
        total=total,
        next_cursor=next_cursor,
    )


async def list_page_json(
    session: AsyncSession, actor: User, query: TaskQuery, *, cache: ResponseCache, ttl: int
) -> tuple[bytes, bool]:
    """The caller's page as JSON bytes, from the per-user cache when fresh; ``(body, cache_hit)``.

    The generation is read before the database, so a page computed from pre-write data can only
    be stored under an already-superseded key (a client never reads its own stale data).
    """
    user_key = actor.id.hex
    # `overdue` depends on the clock, not only on writes: such pages are never cached.
    cacheable = ttl > 0 and query.overdue is None
    generation = await cache.generation(user_key) if cacheable else None
    key = None
    if generation is not None:
        digest = hashlib.sha256(query.cache_key().encode()).hexdigest()[:32]
        key = f"tasks:list:{user_key}:{generation}:{digest}"
        cached = await cache.get(key)
        if cached is not None:
            return cached, True
    body = (await list_page(session, query, owner_id=actor.id)).model_dump_json().encode()
    if key is not None:
        await cache.set(key, body, ttl)
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


async def purge_idempotency_keys(session: AsyncSession, *, older_than: datetime) -> int:
    """Delete idempotency records created before ``older_than``; returns rows deleted."""
    return await task_repo.purge_idempotency_keys(session, older_than)
