"""Task bodies and the list query (SPEC "Tasks")."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from taskhub.core.pagination import Page, SortKey
from taskhub.core.timezones import FIRST_DAY, LAST_DAY
from taskhub.core.validators import (
    MULTILINE_PATTERN,
    NONBLANK_PLAIN_PATTERN,
    ExactText,
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


_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# Pydantic's datetime parser also takes Unix timestamps ("1700000000"): RFC 3339 strings only.
_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]", re.ASCII)
_UTC_DATETIME: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)


def _due_input(value: object) -> datetime | date | None:
    """``due_date`` as sent: null; an RFC 3339 date-time with an offset (converted to UTC); or a bare
    ``YYYY-MM-DD`` (an all-day task, :class:`datetime.date`) within ``FIRST_DAY..LAST_DAY``.

    Errors keep Pydantic's types (``timezone_aware``, ``datetime_from_date_parsing``, ...) so that
    the 422 reads as it did before dates were accepted. A string that is neither (a Unix timestamp,
    ``tomorrow``) is ``due_date_type``.
    """
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and _BARE_DATE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date_parsing", "Input should be a valid date: no such day") from None
    elif isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME_START.match(value)):
        try:
            return _UTC_DATETIME.validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise PydanticCustomError(first["type"], first["msg"]) from None
    else:
        raise PydanticCustomError(
            "due_date_type", "must be an RFC 3339 date-time string with an offset, or a date YYYY-MM-DD"
        )
    if not FIRST_DAY <= day <= LAST_DAY:
        raise PydanticCustomError("date_range", f"must be a day from {FIRST_DAY} to {LAST_DAY}")
    return day


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


def _due_json(value: datetime | date | None) -> str | None:
    # As Pydantic writes a UTC datetime ("...Z"), so that idempotency fingerprints of timed
    # bodies stay what they were; a day as YYYY-MM-DD.
    return None if value is None else value.isoformat().replace("+00:00", "Z")


DueDate = Annotated[
    datetime | date | None,
    PlainValidator(_due_input),
    PlainSerializer(_due_json, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
                {"type": "null"},
            ],
            "description": "RFC 3339 date-time with an offset (a timed task), or YYYY-MM-DD (an all-day task: "
            "due at the end of that day in the owner's time zone); null: no due date",
        }
    ),
]
"""Input of ``due_date``: a :class:`datetime` in UTC (timed), a :class:`date` (all-day), or None."""


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
    """A task as clients see it; datetimes in UTC with a ``Z`` suffix.

    ``all_day``: ``due_on`` (``YYYY-MM-DD``) is the day in the owner's time zone and ``due_date``
    the last microsecond of that day there; otherwise ``due_on`` is null (docs/api.md, "All-day tasks").
    """

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str
    status: Status
    priority: Priority
    due_date: datetime | None
    all_day: bool
    due_on: date | None
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


QUICK_ADD_MAX_LENGTH = 500


class QuickAddRequest(BaseModel):
    """``POST /tasks/parse``: one line of quick-add text, kept exactly as sent (offsets refer to it)."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[
        ExactText,
        Field(
            min_length=1,
            max_length=QUICK_ADD_MAX_LENGTH,
            examples=["Call Ann tomorrow 5pm !high #family"],
            description="One line: a title with an optional date phrase, !high|!medium|!low (or !1/!2/!3), #tags",
        ),
    ]


class QuickAddPart(BaseModel):
    """One recognised piece of the text: ``text == request.text[start:end]`` (offsets in code points).

    ``value``: for ``due`` the due date as the task would store it (``YYYY-MM-DD`` when all-day,
    else a UTC date-time); for ``priority`` the priority; for ``tag`` the normalised tag.
    """

    kind: Literal["due", "priority", "tag"]
    text: str
    start: int
    end: int
    value: str


class QuickAddResult(BaseModel):
    """What ``POST /tasks`` would get from the text: ``title`` is the text without its parts
    (spaces collapsed; may be empty), ``due_date``/``all_day``/``due_on`` as on a task, ``priority``
    null when none was given. ``time_zone`` is the zone the date phrase was read in (the user's)."""

    title: str
    due_date: datetime | None
    all_day: bool
    due_on: date | None
    priority: Priority | None
    tags: list[str]
    parts: list[QuickAddPart]
    time_zone: str


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
