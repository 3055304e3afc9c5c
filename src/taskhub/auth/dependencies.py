"""``CurrentUser`` and ``AdminUser``: the authenticated caller, loaded once per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.auth import service as auth_service
from taskhub.auth.cache import AuthCache
from taskhub.context import get_context
from taskhub.core.errors import Forbidden, Unauthorized
from taskhub.core.security import AccessClaims
from taskhub.db.session import SessionDep, on_commit
from taskhub.users.models import User

bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def current_user(request: Request, session: SessionDep, token: Annotated[str | None, Depends(bearer)]) -> User:
    """The caller, from the ``Authorization: Bearer`` header (never a query string).

    Raises:
        Unauthorized: no token, or a token that does not verify.
    """
    if not token:
        raise Unauthorized("Send an access token in the Authorization: Bearer header.")
    ctx = get_context(request)
    reads_only = request.method in ("GET", "HEAD")
    user, claims = await auth_service.authenticate(
        session, ctx.tokens, token, denylist=ctx.denylist, cache=ctx.auth_cache if reads_only else None
    )
    if not reads_only and not request.url.path.startswith(TASKS_PREFIX):
        # Writes outside /tasks may change who is authenticated: drop cached decisions after commit.
        forget_sessions_after_commit(session, ctx.auth_cache)
    request.state.claims = claims
    return user


TASKS_PREFIX = "/api/v1/tasks"


def forget_sessions_after_commit(session: AsyncSession, cache: AuthCache) -> None:
    """Clear ``cache`` once the unit of work commits (see :mod:`taskhub.auth.cache`)."""

    async def _clear() -> None:
        cache.clear()

    on_commit(session, _clear)


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    """The caller, who must have the ``admin`` role. Raises: Forbidden."""
    if user.role != "admin":
        raise Forbidden("This endpoint needs the admin role.")
    return user


async def current_claims(request: Request) -> AccessClaims:
    """The verified claims of the current request's access token (after ``current_user`` ran)."""
    claims: AccessClaims = request.state.claims
    return claims


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
