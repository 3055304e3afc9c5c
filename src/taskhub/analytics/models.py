"""The ``daily_task_stats`` and ``analytics_task_starts`` tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, PrimaryKeyConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskhub.db.base import Base, UTCDateTime


class DailyTaskStats(Base):
    """One user's counters for one UTC day: tasks created, tasks completed, and the sum of their
    completion times (seconds from creation to completion) for an average."""

    __tablename__ = "daily_task_stats"
    __table_args__ = (PrimaryKeyConstraint("user_id", "day"),)

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    created: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    completion_seconds: Mapped[int] = mapped_column(BigInteger, default=0)


class TaskStart(Base):
    """When a live task was created, remembered from its ``task.created`` event so that its
    completion time can be counted without reading the tasks table (which may have moved on)."""

    __tablename__ = "analytics_task_starts"

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
