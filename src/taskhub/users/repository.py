"""SQL for users."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.db.base import contains_pattern, keyset_after, keyset_order
from taskhub.users.models import User


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with ``user_id``, or None."""
    return await session.get(User, user_id)


async def get_for_update(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with ``user_id``, row-locked (``FOR UPDATE`` on PostgreSQL) for a change, or None."""
    stmt = select(User).where(User.id == user_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def time_zone_for_share(session: AsyncSession, user_id: uuid.UUID) -> str | None:
    """The user's ``time_zone``, read with a share lock (``FOR SHARE`` on PostgreSQL; SQLite's write
    transaction is exclusive anyway) so that a concurrent time-zone change waits or is waited for."""
    stmt = select(User.time_zone).where(User.id == user_id).with_for_update(read=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_email(session: AsyncSession, email_normalized: str) -> User | None:
    """The user whose normalized email is ``email_normalized``, or None."""
    result = await session.execute(select(User).where(User.email_normalized == email_normalized))
    return result.scalar_one_or_none()


def add(session: AsyncSession, user: User) -> None:
    """Stage a new user."""
    session.add(user)


async def active_admin_ids(session: AsyncSession, *, lock: bool) -> list[uuid.UUID]:
    """Ids of active admins; with ``lock`` the rows are locked (``FOR UPDATE``) on PostgreSQL."""
    stmt = select(User.id).where(User.role == "admin", User.is_active.is_(True))
    if lock:
        stmt = stmt.with_for_update()
    return list((await session.execute(stmt)).scalars())


async def delete_user(session: AsyncSession, user: User) -> None:
    """Delete ``user``; refresh tokens go by ``ON DELETE CASCADE`` (the caller deletes the owner-keyed
    rows first: sharded by owner they are on another server, out of the cascade's reach)."""
    await session.execute(delete(User).where(User.id == user.id))


async def list_users(
    session: AsyncSession,
    *,
    q: str | None,
    limit: int,
    offset: int | None,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[User]:
    """Users newest first (``created_at`` desc, ``id`` desc), by offset or after a keyset position."""
    stmt = select(User).where(*_user_filters(q))
    if after is not None:
        stmt = stmt.where(keyset_after(User.created_at, User.id, *after, descending=True))
    stmt = stmt.order_by(*keyset_order(User.created_at, User.id, descending=True)).limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return list((await session.execute(stmt)).scalars())


async def count_users(session: AsyncSession, *, q: str | None) -> int:
    """How many users match ``q``."""
    return int((await session.execute(select(func.count()).select_from(User).where(*_user_filters(q)))).scalar_one())


def _user_filters(q: str | None) -> list[ColumnElement[bool]]:
    if not q:
        return []
    pattern = contains_pattern(q)
    return [or_(User.email.ilike(pattern, escape="\\"), User.name.ilike(pattern, escape="\\"))]
