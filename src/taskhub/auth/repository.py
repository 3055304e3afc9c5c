"""SQL for authentication: the caller's user row with its revocation state, refresh tokens, the denylist."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.auth.models import RefreshToken, RevokedAccessToken
from taskhub.users.models import User


async def get_for_auth(
    session: AsyncSession, user_id: uuid.UUID, jti: str, session_id: uuid.UUID | None
) -> tuple[User, bool] | None:
    """``(user, revoked)`` in one round trip, or None when the user does not exist.

    ``revoked`` is true when ``jti`` is on the denylist or the login family ``session_id`` has a
    revoked refresh token (logout or reuse detection revoke whole families).
    """
    revoked_cond: ColumnElement[bool] = exists().where(RevokedAccessToken.jti == jti)
    if session_id is not None:
        family_revoked = exists().where(RefreshToken.family_id == session_id, RefreshToken.revoked_at.is_not(None))
        revoked_cond = or_(revoked_cond, family_revoked)
    revoked = revoked_cond.label("revoked")
    row = (await session.execute(select(User, revoked).where(User.id == user_id))).first()
    if row is None:
        return None
    return row[0], bool(row[1])


def add_refresh_token(session: AsyncSession, token: RefreshToken) -> None:
    """Stage a new refresh token row."""
    session.add(token)


async def get_refresh_token_for_update(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """The refresh token with ``token_hash``, row-locked on PostgreSQL so two refreshes serialize."""
    stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    """Revoke every not-yet-revoked token of a login family."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def deny_access_token(session: AsyncSession, jti: str, expires_at: datetime) -> None:
    """Add ``jti`` to the denylist (idempotent)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(RevokedAccessToken).values(jti=jti, expires_at=expires_at).on_conflict_do_nothing()
    await session.execute(stmt)


async def purge_expired(session: AsyncSession, now: datetime, *, keep_refresh_for: timedelta) -> int:
    """Delete denylist entries past their expiry, and the refresh-token families whose newest
    member expired more than ``keep_refresh_for`` ago (a revoked family must stay visible while its
    access tokens live, a used token while its family lives); returns rows deleted."""
    a = await session.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now))
    # Whole families only, once their newest member is past the cutoff: a used token of a live
    # family must stay, or presenting it again would no longer be detected as reuse.
    dead_families = (
        select(RefreshToken.family_id)
        .group_by(RefreshToken.family_id)
        .having(func.max(RefreshToken.expires_at) < now - keep_refresh_for)
    )
    b = await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.family_id.in_(dead_families))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(a, "rowcount", 0) or 0) + int(getattr(b, "rowcount", 0) or 0)
