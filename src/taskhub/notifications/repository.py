"""SQL for notifications and notification preferences."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.db.base import keyset_after, keyset_order
from taskhub.db.upsert import insert_for
from taskhub.notifications.models import Notification, NotificationPreferences
from taskhub.tasks.models import Task
from taskhub.users.models import User

DUE_SOON_WINDOW = timedelta(hours=24)

READ_COLUMNS = (
    Notification.id,
    Notification.task_id,
    Notification.kind,
    Notification.title,
    Notification.created_at,
    Notification.read_at,
)


async def insert(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert one notification unless the user already has one with its ``dedupe_key``; True when inserted."""
    stmt = insert_for(session, Notification).values(values).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def email_enabled(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """The user's email setting (on when never set)."""
    stmt = select(NotificationPreferences.email_enabled).where(NotificationPreferences.user_id == user_id)
    value = (await session.execute(stmt)).scalar_one_or_none()
    return True if value is None else bool(value)


async def set_email_enabled(session: AsyncSession, user_id: uuid.UUID, enabled: bool) -> None:
    """Store the user's email setting."""
    stmt = insert_for(session, NotificationPreferences).values(user_id=user_id, email_enabled=enabled)
    await session.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_={"email_enabled": enabled}))


async def task_title(session: AsyncSession, owner_id: uuid.UUID, task_id: uuid.UUID) -> str | None:
    """The current title of ``owner_id``'s task ``task_id``, or None when it is gone (filtered by
    owner first, like every query of user data, so a sharded table prunes to one shard)."""
    stmt = select(Task.title).where(Task.owner_id == owner_id, Task.id == task_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def reminder_candidates(session: AsyncSession, now: datetime, *, limit: int) -> dict[str, Sequence[RowMapping]]:
    """Tasks not done that need a ``due_soon`` (due within 24 h) or ``overdue`` notification and
    have none of that kind yet: ``{kind: rows of (id, owner_id, title)}``, at most ``limit`` each."""
    windows = {
        "due_soon": and_(Task.due_date >= now, Task.due_date < now + DUE_SOON_WINDOW),
        "overdue": Task.due_date < now,
    }
    found: dict[str, Sequence[RowMapping]] = {}
    for kind, window in windows.items():
        known = select(Notification.id).where(Notification.task_id == Task.id, Notification.kind == kind).exists()
        stmt = (
            select(Task.id, Task.owner_id, Task.title)
            .where(Task.status != "done", Task.due_date.is_not(None), window, ~known)
            .order_by(Task.due_date)
            .limit(limit)
        )
        found[kind] = (await session.execute(stmt)).mappings().all()
    return found


async def emails_wanted(session: AsyncSession, user_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``user_ids`` turned email off."""
    if not user_ids:
        return set()
    prefs = NotificationPreferences
    stmt = select(prefs.user_id).where(prefs.user_id.in_(user_ids), prefs.email_enabled.is_(False))
    return set(user_ids) - set((await session.execute(stmt)).scalars().all())


async def page(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    unread_only: bool,
    offset: int | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[RowMapping]:
    """The user's notifications, newest first: ``limit`` rows from ``offset`` or after a keyset position."""
    stmt = select(*READ_COLUMNS).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    if after is not None:
        stmt = stmt.where(keyset_after(Notification.created_at, Notification.id, *after, descending=True))
    stmt = stmt.order_by(*keyset_order(Notification.created_at, Notification.id, descending=True)).limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return (await session.execute(stmt)).mappings().all()


async def count(session: AsyncSession, user_id: uuid.UUID, *, unread_only: bool) -> int:
    """How many notifications the user has (unread ones only with ``unread_only``)."""
    stmt = select(func.count()).select_from(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return int((await session.execute(stmt)).scalar_one())


async def mark_read(session: AsyncSession, user_id: uuid.UUID, ids: Sequence[uuid.UUID] | None, now: datetime) -> int:
    """Mark the user's notifications ``ids`` (all unread ones when None) read; returns rows changed."""
    stmt = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(ids))
    result = await session.execute(stmt.values(read_at=now).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_pending_emails(session: AsyncSession, *, limit: int) -> Sequence[RowMapping]:
    """Up to ``limit`` notifications waiting for an email, with the recipient's address, locked
    for this transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: several senders never send
    the same one; SQLite has one writer at a time anyway)."""
    stmt = (
        select(
            Notification.id, Notification.kind, Notification.title, Notification.email_attempts, User.email, User.name
        )
        .join(User, User.id == Notification.user_id)
        .where(Notification.email_status == "pending")
        .order_by(Notification.created_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=Notification)
    return (await session.execute(stmt)).mappings().all()


async def set_email_status(session: AsyncSession, notification_id: uuid.UUID, status: str, attempts: int) -> None:
    """Record the outcome of an email attempt."""
    stmt = update(Notification).where(Notification.id == notification_id)
    await session.execute(stmt.values(email_status=status, email_attempts=attempts))
