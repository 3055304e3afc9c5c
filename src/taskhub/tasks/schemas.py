"""Task bodies and the list query (SPEC "Tasks")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from taskhub.core.pagination import Page, SortKey
from taskhub.core.validators import (
    MULTILINE_PATTERN,
    NONBLANK_PLAIN_PATTERN,
    MultilineText,
    PlainText,
    UtcDatetime,
    nfc,
    not_null,
    without_null,
)

Status = Literal["todo", "in_progress", "done"]
Priority = Literal["low", "medium", "high"]
SortName = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "due_date", "-due_date", "priority", "-priority"
]


def _title(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 200:
        raise ValueError("must be 1..200 characters after trimming")
    return value


def _description(value: str) -> str:
    if len(value) > 10_000:  # NFC can lengthen text (U+0958 becomes two code points)
        raise ValueError("must be at most 10000 characters")
    return value


def normalize_tag(raw: str) -> str:
    """The stored and compared form of a tag: trimmed, lower-cased, NFC (SPEC "Tasks")."""
    # Lower-casing can leave NFC (U+0130 becomes i + U+0307): normalise after it.
    return nfc(raw.strip().lower())


def _tags(values: list[str]) -> list[str]:
    if len(values) > 20:
        raise ValueError("at most 20 tags")
    seen: dict[str, None] = {}
    for i, raw in enumerate(values):
        tag = normalize_tag(raw)
        if not 1 <= len(tag) <= 50:
            raise ValueError(f"tag {i} must be 1..50 characters after trimming")
        seen.setdefault(tag, None)
    return list(seen)


def _rfc3339_only(value: object) -> object:
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


# Lengths are counted in code points after NFC normalisation and trimming; the max_length before
# them only bounds the work done on absurd input.
# json_schema_extra documents the rules the validators apply (lengths after trimming, no control
# characters) in the OpenAPI document.
Title = Annotated[
    PlainText,
    Field(max_length=1000, json_schema_extra={"maxLength": 200, "pattern": NONBLANK_PLAIN_PATTERN}),
    AfterValidator(_title),
]
Description = Annotated[
    MultilineText,
    Field(max_length=10_000, json_schema_extra={"pattern": MULTILINE_PATTERN}),
    AfterValidator(_description),
]
Tag = Annotated[
    PlainText, Field(max_length=1000, json_schema_extra={"maxLength": 50, "pattern": NONBLANK_PLAIN_PATTERN})
]
Tags = Annotated[list[Tag], Field(json_schema_extra={"maxItems": 20}), AfterValidator(_tags)]
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

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=without_null("title", "description", "status", "priority", "tags")
    )

    title: Title | None = None
    description: Description | None = None
    status: Status | None = None
    priority: Priority | None = None
    due_date: DueDate = None
    tags: Tags | None = None

    _not_null = not_null("title", "description", "status", "priority", "tags")


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


class TaskPage(Page[TaskRead]):
    """``GET /tasks``: ``page``/``total`` in offset mode; null with a ``cursor``."""


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


SORT_KEYS: dict[str, SortKey] = {
    "created_at": SortKey("created_at", "datetime"),
    "updated_at": SortKey("updated_at", "datetime"),
    "due_date": SortKey("due_date", "datetime", nullable=True),
    "priority": SortKey("priority", "rank", ranks=frozenset({1, 2, 3})),
}
"""The sort keys of ``GET /tasks`` (``-`` prefix = descending); priority sorts by its rank 1..3."""


class TaskQuery(BaseModel):
    """Parsed filters and sort of a task list (validated in ``tasks.dependencies``)."""

    status: list[Status] | None = None
    priority: list[Priority] | None = None
    tag: str | None = None
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool | None = None
    owner_id: uuid.UUID | None = None
    sort: SortName = "-created_at"

    @property
    def sort_key(self) -> SortKey:
        """The :class:`SortKey` of ``sort``."""
        return SORT_KEYS[self.sort.lstrip("-")]

    @property
    def descending(self) -> bool:
        """True for a ``-``-prefixed sort."""
        return self.sort.startswith("-")

    def cache_key(self) -> str:
        """A stable text form of the query for cache keys."""
        return self.model_dump_json()
