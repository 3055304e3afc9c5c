"""The ``notifications`` and ``notification_preferences`` tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskhub.core.timeutil import new_id, utcnow
from taskhub.db.base import Base, UTCDateTime

KINDS = ("completed", "due_soon", "overdue")
EMAIL_STATUSES = ("none", "pending", "sent", "failed")


class Notification(Base):
    """One message to a user about one of their tasks.

    ``dedupe_key`` is unique per user: ``<task_id>:due_soon`` and ``<task_id>:overdue`` (so every
    task is reminded once per kind, however many schedulers run), ``<event_id>`` for completions.
    ``email_status`` is ``none`` (no email wanted), ``pending`` (the sender will try), ``sent`` or
    ``failed`` (gave up after ``email_attempts``).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("kind IN ('completed', 'due_soon', 'overdue')", name="kind"),
        CheckConstraint("email_status IN ('none', 'pending', 'sent', 'failed')", name="email_status"),
        UniqueConstraint("user_id", "dedupe_key"),
        Index("ix_notifications_user_created", "user_id", "created_at", "id"),
        Index("ix_notifications_email_status", "email_status", "created_at"),
        Index("ix_notifications_task_kind", "task_id", "kind"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    dedupe_key: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    email_status: Mapped[str] = mapped_column(String(16), default="none")
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)


class NotificationPreferences(Base):
    """A user's notification settings; no row means the defaults (email on)."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    email_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
