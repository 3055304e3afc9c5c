"""Notification shapes of the API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from taskhub.core.pagination import Page, SortKey

CURSOR_KEY = SortKey("created_at", "datetime")


class NotificationRead(BaseModel):
    """One notification: ``kind`` is ``completed``, ``due_soon`` (due within 24 h) or ``overdue``;
    ``read_at`` is null until it is marked read."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID
    kind: Literal["completed", "due_soon", "overdue"]
    title: str
    created_at: datetime
    read_at: datetime | None


NotificationPage = Page[NotificationRead]


class UnreadCount(BaseModel):
    """How many of the caller's notifications are unread."""

    unread: int


class MarkRead(BaseModel):
    """Which notifications to mark read: ``ids`` (at most 100), or every unread one when omitted."""

    ids: list[uuid.UUID] | None = Field(default=None, max_length=100)


class MarkedRead(BaseModel):
    """How many notifications changed from unread to read, and how many stay unread."""

    marked: int
    unread: int


class NotificationPreferencesBody(BaseModel):
    """The caller's notification settings: ``email`` sends each notification by email too
    (when the server has SMTP configured)."""

    email: bool
