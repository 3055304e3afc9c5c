"""The ``tasks`` and ``idempotency_keys`` tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, Uuid, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from taskhub.core.timeutil import new_id, utcnow
from taskhub.db.base import Base, UTCDateTime

STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("low", "medium", "high")
PRIORITY_RANK = {"low": 1, "medium": 2, "high": 3}

TagList = JSON().with_variant(JSONB(), "postgresql")


class Task(Base):
    """A task owned by one user. ``priority_rank`` (1..3) makes priority sortable and indexable."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("status IN ('todo', 'in_progress', 'done')", name="status"),
        CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority"),
        # An all-day task has its day and the instant that day ends; any other task has no day.
        CheckConstraint(
            "(all_day AND due_on IS NOT NULL AND due_date IS NOT NULL) OR (NOT all_day AND due_on IS NULL)",
            name="all_day",
        ),
        Index("ix_tasks_owner_status", "owner_id", "status"),
        Index("ix_tasks_owner_priority", "owner_id", "priority_rank", "id"),
        Index("ix_tasks_owner_created", "owner_id", "created_at", "id"),
        Index("ix_tasks_owner_updated", "owner_id", "updated_at", "id"),
        Index("ix_tasks_owner_due", "owner_id", "due_date", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="todo")
    priority: Mapped[str] = mapped_column(String(8), default="medium")
    priority_rank: Mapped[int] = mapped_column(Integer, default=2)
    due_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # All-day tasks (docs/api.md "All-day tasks"): ``due_on`` is the calendar day in the owner's
    # time zone and ``due_date`` the last microsecond of that day there, so every filter, sort and
    # scheduler keeps reading the one ``due_date`` column.
    all_day: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    due_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    tags: Mapped[list[str]] = mapped_column(TagList, default=list)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Optimistic concurrency: every UPDATE is "... WHERE version = :old" and bumps it; a lost race
    # raises StaleDataError, reported as 412 (the same answer as a stale If-Match). The ORM identity
    # is (owner_id, id), so ORM updates name the owner too: sharded by owner (db/sharding.py), an
    # update then goes to the owner's shard only.
    __mapper_args__ = {"version_id_col": version, "primary_key": [owner_id, id]}


class IdempotencyKey(Base):
    """The first response to a create made with an ``Idempotency-Key``, replayed for 24 h."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
