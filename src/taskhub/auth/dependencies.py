"""The authenticated caller (``CurrentPrincipal``, ``CurrentUser``, ``AdminUser``) and the
stricter rate limits of the credential endpoints (``AuthRateLimit``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from taskhub.auth import service as auth_service
from taskhub.context import Caller, ClientAddress, Ctx, get_context, set_caller
from taskhub.core.errors import DomainError, Forbidden, Unauthorized
from taskhub.core.observability import bind_user
from taskhub.core.ratelimit import RateLimiter, RateLimitResult
from taskhub.core.security import AccessClaims, normalize_email
from taskhub.urls import api_path
from taskhub.users.models import User

TOKEN_URL = api_path("/auth/token")
bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: their account as read at authentication (detached from any session:
    services that change the account load it again in their own unit of work) and the claims of
    the access token they presented."""

    user: User
    claims: AccessClaims


async def _authenticate(conn: HTTPConnection, token: str | None) -> Principal:
    if not token:
        raise Unauthorized("Send an access token in the Authorization: Bearer header.")
    ctx = get_context(conn)
    found = await auth_service.authenticate(ctx.db, ctx.tokens, token, cache=ctx.auth_cache)
    bind_user(conn.scope, found.user.id)
    set_caller(conn, Caller(found.user.id, found.read_floor))
    return Principal(found.user, found.claims)


async def current_principal(conn: HTTPConnection, token: Annotated[str | None, Depends(bearer)]) -> Principal:
    """The caller and their token's claims, from the ``Authorization: Bearer`` header (never a
    query string).

    Raises:
        Unauthorized: no token, or a token that does not verify or was revoked.
    """
    return await _authenticate(conn, token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(conn: HTTPConnection, token: Annotated[str | None, Depends(bearer)]) -> User:
    """The caller's account (see :class:`Principal`); one dependency, not two, on the hot path.

    Raises:
        Unauthorized: no token, or a token that does not verify or was revoked.
    """
    return (await _authenticate(conn, token)).user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    """The caller, who must have the ``admin`` role. Raises: Forbidden."""
    if user.role != "admin":
        raise Forbidden("This endpoint needs the admin role.")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


@dataclass
class AuthLimits:
    """The ``auth`` rate limit of the credential endpoints (SPEC "Operations": 10 per minute per
    client IP *and* per account). The per-IP hit is taken when the dependency runs; the endpoint
    adds the per-account hit once it knows the email (:meth:`charge_account`). :meth:`headers`
    gives the ``RateLimit-*`` headers of whichever runs out first."""

    limiter: RateLimiter
    results: list[RateLimitResult] = field(default_factory=list)

    async def charge_account(self, email: str) -> None:
        """Count this attempt against the account named by ``email``. Raises: TooManyRequests."""
        self.results.append(await self.limiter.enforce("auth", "acct:" + normalize_email(email)))

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` headers of the strictest result so far (empty when limits are off)."""
        if not self.limiter.enabled or not self.results:
            return {}
        return min(self.results, key=lambda r: r.remaining).headers()


async def auth_limits(ctx: Ctx, ip: ClientAddress) -> AsyncIterator[AuthLimits]:
    """Charge the per-IP ``auth`` limit, and put the strictest ``RateLimit-*`` headers on the
    endpoint's error answers too (a wrong password must show the budget it spent).

    Raises:
        TooManyRequests: the per-IP budget is spent (429 with ``Retry-After``).
    """
    limits = AuthLimits(ctx.limiter)
    limits.results.append(await ctx.limiter.enforce("auth", ip))
    try:
        yield limits
    except DomainError as exc:
        exc.headers = {**limits.headers(), **exc.headers}
        raise


AuthRateLimit = Annotated[AuthLimits, Depends(auth_limits, scope="function")]
