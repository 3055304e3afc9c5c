"""Imports every ORM module so ``Base.metadata`` is complete (used by Alembic and tests)."""

from taskhub.auth.models import RefreshToken, RevokedAccessToken
from taskhub.db.base import Base
from taskhub.events.models import OutboxEvent
from taskhub.tasks.models import IdempotencyKey, Task
from taskhub.users.models import User

__all__ = ["Base", "IdempotencyKey", "OutboxEvent", "RefreshToken", "RevokedAccessToken", "Task", "User"]
