"""Events the tasks domain declares (past-tense facts), written to the outbox with each change."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.events import outbox
from taskhub.tasks.models import Task

TASK_CREATED = "task.created"
TASK_UPDATED = "task.updated"
TASK_COMPLETED = "task.completed"
TASK_DELETED = "task.deleted"

FIELDS = ("title", "description", "status", "priority", "due_date", "all_day", "due_on", "tags")


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def snapshot(task: Task) -> dict[str, Any]:
    """The user-editable fields of ``task`` as JSON values."""
    return {name: _json(getattr(task, name)) for name in FIELDS}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the fields that changed."""
    return {k: [before[k], after[k]] for k in FIELDS if before[k] != after[k]}


def created(task: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The outbox row of the ``task.created`` event of ``task`` (its column values, about to be
    inserted); ``changes`` holds the editable fields as created."""
    return outbox.event_values(
        type=TASK_CREATED,
        aggregate_id=task["id"],
        owner_id=task["owner_id"],
        version=task["version"],
        changes={name: _json(task[name]) for name in FIELDS},
        occurred_at=at,
    )


def record(session: AsyncSession, type_: str, task: Task, changes: dict[str, Any], at: datetime) -> None:
    """Write one task event to the outbox in the caller's unit of work."""
    outbox.record(
        session,
        type=type_,
        aggregate_id=task.id,
        owner_id=task.owner_id,
        version=task.version,
        changes=changes,
        occurred_at=at,
    )
