"""Imports every ORM module so ``Base.metadata`` is complete (used by Alembic and tests)."""

from taskhub.analytics.models import DailyTaskStats, TaskStart
from taskhub.auth.models import RefreshToken, RevokedAccessToken
from taskhub.db.base import Base
from taskhub.events.models import OutboxEvent, ProcessedEvent
from taskhub.notifications.models import Notification, NotificationPreferences
from taskhub.tasks.models import IdempotencyKey, Task
from taskhub.users.models import User

__all__ = [
    "Base",
    "DailyTaskStats",
    "IdempotencyKey",
    "Notification",
    "NotificationPreferences",
    "OutboxEvent",
    "ProcessedEvent",
    "RefreshToken",
    "RevokedAccessToken",
    "Task",
    "TaskStart",
    "User",
]
