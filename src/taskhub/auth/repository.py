"""SQL for refresh tokens and the access-token denylist."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.auth.models import RefreshToken, RevokedAccessToken


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
