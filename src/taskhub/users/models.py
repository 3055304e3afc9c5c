"""The ``users`` table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskhub.core.timeutil import new_id, utcnow
from taskhub.db.base import Base, UTCDateTime

ROLES = ("user", "admin")


class User(Base):
    """An account. ``email_normalized`` (NFKC + casefold) is the unique lookup key."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # IANA name (``Europe/Berlin``): the calendar of the user's all-day tasks and of quick-add
    # parsing. Validated by ``users.schemas.check_time_zone``; at most 64 characters.
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    tokens_valid_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
