"""Task bodies and the list query (SPEC "Tasks")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from taskhub.core.validators import NoNulStr, UtcDatetime

Status = Literal["todo", "in_progress", "done"]
Priority = Literal["low", "medium", "high"]
SortKey = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "due_date", "-due_date", "priority", "-priority"
]


def _title(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 200:
        raise ValueError("must be 1..200 characters after trimming")
    return value


def _tags(values: list[str]) -> list[str]:
    if len(values) > 20:
        raise ValueError("at most 20 tags")
    seen: dict[str, None] = {}
    for i, raw in enumerate(values):
        tag = raw.strip().lower()
        if not 1 <= len(tag) <= 50:
            raise ValueError(f"tag {i} must be 1..50 characters after trimming")
        seen.setdefault(tag, None)
    return list(seen)


def _rfc3339_only(value: object) -> object:
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


Title = Annotated[NoNulStr, Field(max_length=1000), AfterValidator(_title)]
Description = Annotated[NoNulStr, Field(max_length=10_000)]
Tags = Annotated[list[Annotated[NoNulStr, Field(max_length=1000)]], AfterValidator(_tags)]
DueDate = Annotated[UtcDatetime | None, BeforeValidator(_rfc3339_only)]


class TaskCreate(BaseModel):
    """``POST /tasks`` and ``PUT /tasks/{id}``: omitted fields get their defaults."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    status: Status = "todo"
    priority: Priority = "medium"
    due_date: DueDate = None
    tags: Tags = Field(default_factory=list)


TaskReplace = TaskCreate


class TaskUpdate(BaseModel):
    """``PATCH /tasks/{id}``: only the fields sent are changed; ``due_date: null`` clears it."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    status: Status | None = None
    priority: Priority | None = None
    due_date: DueDate = None
    tags: Tags | None = None

    @field_validator("title", "description", "status", "priority", "tags")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value


class TaskRead(BaseModel):
    """A task as clients see it; datetimes in UTC with a ``Z`` suffix."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str
    status: Status
    priority: Priority
    due_date: datetime | None
    tags: list[str]
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    version: int


class TaskPage(BaseModel):
    """``GET /tasks``: ``page``/``total`` in offset mode; null with a ``cursor``."""

    items: list[TaskRead]
    limit: int
    page: int | None
    total: int | None
    next_cursor: str | None


class StatusCounts(BaseModel):
    """Counts per status."""

    todo: int
    in_progress: int
    done: int


class PriorityCounts(BaseModel):
    """Counts per priority."""

    low: int
    medium: int
    high: int


class TaskStats(BaseModel):
    """``GET /tasks/stats`` for the caller."""

    total: int
    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: int
    completed_last_7_days: int


class TaskQuery(BaseModel):
    """Parsed filters, sort and paging of a task list (validated in the router)."""

    status: list[Status] | None = None
    priority: list[Priority] | None = None
    tag: str | None = None
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool | None = None
    owner_id: uuid.UUID | None = None
    sort: SortKey = "-created_at"
    limit: int = 20
    page: int | None = None
    cursor: str | None = None

    def cache_key(self) -> str:
        """A stable text form of the query for cache keys."""
        return self.model_dump_json()
