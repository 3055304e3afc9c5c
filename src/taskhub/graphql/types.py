"""GraphQL object, input and enum types, and their conversion from the REST read models.

Field values are the REST ones (``TaskRead``, ``UserRead``, ``NotificationRead``, ``TaskStats``)
under camelCase names; enums carry the REST values (``in_progress`` is ``IN_PROGRESS``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from taskhub.core.timeutil import to_utc
from taskhub.graphql.context import GraphQLContext
from taskhub.notifications.schemas import NotificationRead
from taskhub.tasks.schemas import TaskRead, TaskStats
from taskhub.users.errors import UserNotFound
from taskhub.users.models import User as UserModel


def serialize_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as REST renders datetimes (SPEC "Conventions")."""
    return to_utc(value).isoformat().replace("+00:00", "Z")


def parse_datetime(value: object) -> str:
    """Input datetimes stay strings here: the REST models parse them (offset required, UTC after),
    so both APIs accept exactly the same values. Raises: ValueError for a non-string."""
    if not isinstance(value, str):
        raise ValueError("DateTime must be an RFC 3339 string with an offset")
    return value


DATETIME = strawberry.scalar(
    name="DateTime",
    description="RFC 3339 date-time. Input needs an offset; output is UTC with a Z suffix.",
    serialize=serialize_datetime,
    parse_value=parse_datetime,
)


@strawberry.enum(description="Where a task stands.")
class TaskStatus(Enum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"


@strawberry.enum(description="How urgent a task is (HIGH > MEDIUM > LOW).")
class TaskPriority(Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@strawberry.enum(description="Order of a task list; ties are broken by id. Null due dates sort last both ways.")
class TaskSort(Enum):
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    UPDATED_AT = "updated_at"
    UPDATED_AT_DESC = "-updated_at"
    DUE_DATE = "due_date"
    DUE_DATE_DESC = "-due_date"
    PRIORITY = "priority"
    PRIORITY_DESC = "-priority"


@strawberry.enum(description="Why a notification was made.")
class NotificationKind(Enum):
    COMPLETED = "completed"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"


@strawberry.enum(description="What an account may do.")
class Role(Enum):
    USER = "user"
    ADMIN = "admin"


@strawberry.type(description="An account (never its password hash).")
class User:
    id: strawberry.ID
    email: str
    name: str
    role: Role
    is_active: bool
    time_zone: str = strawberry.field(description="IANA name (Europe/Berlin): the calendar of all-day tasks.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: UserModel) -> User:
        """The GraphQL view of an account row."""
        return cls(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            name=user.name,
            role=Role(user.role),
            is_active=user.is_active,
            time_zone=user.time_zone,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


@strawberry.type(description="A task, as GET /api/v1/tasks/{id} shows it.")
class Task:
    id: strawberry.ID
    title: str
    description: str
    status: TaskStatus
    priority: TaskPriority
    due_date: datetime | None
    all_day: bool = strawberry.field(
        description="A due day without a time: dueOn is that day, dueDate its last microsecond in the owner's zone."
    )
    due_on: date | None
    tags: list[str]
    owner_id: strawberry.ID
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    version: int = strawberry.field(description="Starts at 1, +1 on every change; send it as expectedVersion.")

    @strawberry.field(description="The task's owner: the caller (every task this API returns is the caller's own).")
    async def owner(self, info: Info[GraphQLContext, None]) -> User:
        """The caller, already authenticated for this request: queries read the caller's tasks only
        and mutations act on them, so no statement is needed. Raises: UserNotFound if a task of
        someone else ever reached this field (a bug: it would otherwise show another account)."""
        viewer = await info.context.viewer()
        if viewer.id != uuid.UUID(self.owner_id):
            raise UserNotFound(f"No user with id {self.owner_id}.")
        return User.of(viewer)

    @classmethod
    def of(cls, task: TaskRead) -> Task:
        """The GraphQL view of a task."""
        return cls(
            id=strawberry.ID(str(task.id)),
            title=task.title,
            description=task.description,
            status=TaskStatus(task.status),
            priority=TaskPriority(task.priority),
            due_date=task.due_date,
            all_day=task.all_day,
            due_on=task.due_on,
            tags=list(task.tags),
            owner_id=strawberry.ID(str(task.owner_id)),
            created_at=task.created_at,
            updated_at=task.updated_at,
            completed_at=task.completed_at,
            version=task.version,
        )


@strawberry.type(description="Relay page information; paging is forward only (first/after).")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
    has_previous_page: bool = strawberry.field(description="Always false: paging goes forward only.")
    start_cursor: str | None


@strawberry.type
class TaskEdge:
    cursor: str = strawberry.field(description="Pass as `after` to continue after this task.")
    node: Task


@strawberry.type(description="A page of the viewer's tasks (keyset paging: no repeats or skips).")
class TaskConnection:
    edges: list[TaskEdge]
    page_info: PageInfo


@strawberry.type(description="A notification made by the worker (completed, due soon, overdue).")
class Notification:
    id: strawberry.ID
    task_id: strawberry.ID
    kind: NotificationKind
    title: str
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, item: NotificationRead) -> Notification:
        """The GraphQL view of a notification."""
        return cls(
            id=strawberry.ID(str(item.id)),
            task_id=strawberry.ID(str(item.task_id)),
            kind=NotificationKind(item.kind),
            title=item.title,
            created_at=item.created_at,
            read_at=item.read_at,
        )


@strawberry.type
class NotificationEdge:
    cursor: str
    node: Notification


@strawberry.type(description="A page of the viewer's notifications, newest first.")
class NotificationConnection:
    edges: list[NotificationEdge]
    page_info: PageInfo


@strawberry.type
class StatusCounts:
    todo: int
    in_progress: int
    done: int


@strawberry.type
class PriorityCounts:
    low: int
    medium: int
    high: int


@strawberry.type(description="The viewer's task counts, as GET /api/v1/tasks/stats.")
class Stats:
    total: int
    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: int
    completed_last_7_days: int

    @classmethod
    def of(cls, stats: TaskStats) -> Stats:
        """The GraphQL view of the stats."""
        return cls(
            total=stats.total,
            by_status=StatusCounts(**stats.by_status.model_dump()),
            by_priority=PriorityCounts(**stats.by_priority.model_dump()),
            overdue=stats.overdue,
            completed_last_7_days=stats.completed_last_7_days,
        )


@strawberry.input(description="A new task; omitted fields get the REST defaults.")
class CreateTaskInput:
    title: str
    description: str | None = strawberry.UNSET
    status: TaskStatus | None = strawberry.UNSET
    priority: TaskPriority | None = strawberry.UNSET
    due_date: datetime | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET


@strawberry.input(description="Fields to change; omitted ones stay. dueDate: null clears the due date.")
class UpdateTaskInput:
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    status: TaskStatus | None = strawberry.UNSET
    priority: TaskPriority | None = strawberry.UNSET
    due_date: datetime | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET


@strawberry.type
class CreateTaskPayload:
    task: Task
    replayed: bool = strawberry.field(description="True when an earlier request with the idempotencyKey made it.")


@strawberry.type
class TaskPayload:
    task: Task


@strawberry.type
class DeleteTaskPayload:
    deleted_id: strawberry.ID
