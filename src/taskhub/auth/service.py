"""Login, refresh-token rotation with reuse detection, logout, and access-token verification.

Rules: refresh tokens are opaque, single use, rotated on every refresh and stored as SHA-256
hashes; reuse revokes the whole family (RFC 9700 section 4.14.2). Logout denies the access token's
``jti`` until it expires and revokes the refresh family. ``tokens_valid_after`` cuts off every
token issued before a password change or deactivation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.auth import repository as auth_repo
from taskhub.auth.cache import AuthCache, invalidate_after_commit
from taskhub.auth.errors import AccountDisabled, InvalidCredentials, InvalidRefreshToken, RefreshTokenReused
from taskhub.auth.models import RefreshToken
from taskhub.core.denylist import TokenDenylist
from taskhub.core.errors import Unauthorized
from taskhub.core.security import AccessClaims, PasswordHasher, TokenCodec, hash_token, new_refresh_token
from taskhub.core.security import normalize_email as _normalize_email
from taskhub.core.timeutil import new_id, to_utc, utcnow
from taskhub.db.session import Database, on_commit, read_your_writes
from taskhub.users import repository as user_repo
from taskhub.users.models import User


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A new token pair; ``expires_in`` (s) is the access token's lifetime."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_at: datetime


async def issue_tokens(
    session: AsyncSession,
    tokens: TokenCodec,
    user: User,
    *,
    refresh_ttl: int,
    family_id: uuid.UUID | None = None,
) -> IssuedTokens:
    """Issue an access token and a refresh token (a new family unless ``family_id`` is given).

    The access token's ``sid`` claim names the family, so revoking the family ends it too.
    """
    now = utcnow()
    family = family_id or new_id()
    access, _ = tokens.encode(user_id=user.id, role=user.role, session_id=family)
    refresh = new_refresh_token()
    expires_at = now + timedelta(seconds=refresh_ttl)
    auth_repo.add_refresh_token(
        session,
        RefreshToken(
            user_id=user.id,
            family_id=family,
            token_hash=hash_token(refresh),
            created_at=now,
            expires_at=expires_at,
        ),
    )
    await session.flush()
    # The first request with the new token reads the user from a replica: it must have replayed
    # the user's registration or last change (read-your-writes; no effect without replicas).
    read_your_writes(session, user.id)
    return IssuedTokens(access, refresh, tokens.ttl, expires_at)


async def find_login_user(session: AsyncSession, email: str) -> User | None:
    """The account a login names, or None (reads only; run it on a read session and close that
    session before :func:`check_credentials`, so no pooled connection or lock is held during argon2)."""
    if "\x00" in email:
        return None
    return await user_repo.get_by_email(session, _normalize_email(email))


async def check_credentials(hasher: PasswordHasher, user: User | None, password: str) -> User:
    """``user`` when ``password`` is theirs and the account is active.

    Raises:
        InvalidCredentials: unknown email or wrong password (same body, similar time: a dummy hash
            is verified for unknown emails). AccountDisabled: right password, deactivated account.
    """
    ok = await hasher.verify(password, user.password_hash if user else None)
    if user is None or not ok:
        raise InvalidCredentials("The email or password is incorrect.")
    if not user.is_active:
        raise AccountDisabled("This account has been deactivated.")
    return user


async def refresh(
    session: AsyncSession, tokens: TokenCodec, *, refresh_token: str, refresh_ttl: int, auth_cache: AuthCache
) -> IssuedTokens:
    """Rotate a refresh token: mark it used, issue a new pair in the same family.

    Raises:
        InvalidRefreshToken: unknown, expired or revoked token, or the user can no longer log in.
        RefreshTokenReused: the token was already used; the family is revoked (and committed), which
            ends its access tokens too (their cached decisions are forgotten).
    """
    now = utcnow()
    stored = await auth_repo.get_refresh_token_for_update(session, hash_token(refresh_token))
    if stored is None:
        raise InvalidRefreshToken("The refresh token is not valid.")
    if stored.used_at is not None:
        await auth_repo.revoke_family(session, stored.family_id, now)
        invalidate_after_commit(session, auth_cache, stored.user_id)
        raise RefreshTokenReused(
            "This refresh token was already used; every session of this login was revoked. Sign in again."
        )
    if stored.revoked_at is not None or to_utc(stored.expires_at) <= now:
        raise InvalidRefreshToken("The refresh token has expired or was revoked.")
    user = await user_repo.get(session, stored.user_id)
    if user is None or not user.is_active or to_utc(stored.created_at) < to_utc(user.tokens_valid_after):
        raise InvalidRefreshToken("The refresh token is no longer valid.")
    stored.used_at = now
    return await issue_tokens(session, tokens, user, refresh_ttl=refresh_ttl, family_id=stored.family_id)


async def logout(
    session: AsyncSession,
    user: User,
    claims: AccessClaims,
    *,
    refresh_token: str | None,
    denylist: TokenDenylist,
    auth_cache: AuthCache,
) -> None:
    """Deny the access token's ``jti`` until it expires and revoke its login family (``sid``),
    which ends the family's refresh tokens and every access token issued with it.

    A refresh token given too has its family revoked when it is the caller's; an unknown one or
    someone else's is ignored (logout still succeeds).
    """
    now = utcnow()
    await auth_repo.deny_access_token(session, claims.jti, datetime.fromtimestamp(claims.exp, UTC))
    if claims.sid is not None:
        await auth_repo.revoke_family(session, claims.sid, now)

    async def _share() -> None:
        await denylist.add(claims.jti, claims.exp)

    on_commit(session, _share)
    invalidate_after_commit(session, auth_cache, user.id)
    if refresh_token:
        stored = await auth_repo.get_refresh_token_for_update(session, hash_token(refresh_token))
        if stored is not None and stored.user_id == user.id:
            await auth_repo.revoke_family(session, stored.family_id, now)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A verified access token: its ``user`` (detached), its ``claims``, and the ``read_floor``
    (WAL position) every read of the request must have replayed (read-your-writes)."""

    user: User
    claims: AccessClaims
    read_floor: int


async def authenticate(
    db: Database,
    tokens: TokenCodec,
    token: str,
    *,
    cache: AuthCache,
) -> Authenticated:
    """Verify an access token and load its user.

    The cache answers first: the shared denylist in Redis mode (no database work for a revoked
    token), then a recent positive decision for the same token, reused under the rules of
    :mod:`taskhub.auth.cache`; otherwise
    the user is read in a short read-only unit of work of its own (closed before the endpoint
    runs, so no write transaction or lock includes it), together with the database denylist and
    the login family's revocation, so a cache outage never lets a revoked token through. That read
    goes to a replica only if it has replayed the user's read floor, which every change to the
    user's authentication state raises (:func:`~taskhub.auth.cache.invalidate_after_commit`): a
    lagging replica never lets a revoked token through either.

    Raises:
        Unauthorized: bad signature/claims, expired, denied ``jti``, unknown or inactive user, or
            issued before the user's ``tokens_valid_after``.
    """
    claims = await tokens.verify(token)
    known = await cache.lookup(claims.jti, claims.sub)  # before the read: see auth.cache
    if known.revoked:
        raise Unauthorized("The access token has been revoked.")
    if known.user is not None:
        return Authenticated(known.user, claims, known.read_floor)
    async with db.unit_of_work(readonly=True, floor=known.read_floor) as session:
        found = await auth_repo.get_for_auth(session, claims.sub, claims.jti, claims.sid)
    if found is None:
        raise Unauthorized("The access token is no longer valid.")
    user, revoked = found
    if revoked:
        raise Unauthorized("The access token has been revoked.")
    if not user.is_active or claims.iat < to_utc(user.tokens_valid_after).timestamp():
        raise Unauthorized("The access token is no longer valid.")
    cache.put(claims.jti, user, known.stamp)
    return Authenticated(user, claims, known.read_floor)


async def purge_expired(session: AsyncSession, now: datetime, *, access_token_ttl: int) -> int:
    """Delete denylist entries past their expiry and refresh tokens that expired more than one
    access-token lifetime (s) ago: until then a revoked family still ends its live access tokens
    through their ``sid``. Returns rows deleted."""
    return await auth_repo.purge_expired(session, now, keep_refresh_for=timedelta(seconds=access_token_ttl))
