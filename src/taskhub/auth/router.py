"""``/auth``: register, login (JSON and OAuth2 form), refresh, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.auth import service as auth_service
from taskhub.auth.dependencies import CurrentUser, current_claims, forget_sessions_after_commit
from taskhub.auth.errors import InvalidRefreshToken
from taskhub.auth.schemas import LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, TokenPair
from taskhub.context import AppContext, Ctx
from taskhub.core.errors import Unauthorized
from taskhub.core.responses import model_response
from taskhub.core.security import AccessClaims, normalize_email
from taskhub.db.session import SessionDep
from taskhub.users import service as user_service
from taskhub.users.schemas import UserRead

router = APIRouter(prefix="/auth", tags=["auth"])

REFRESH_COOKIE = "taskhub_refresh"
COOKIE_PATH = "/api/v1/auth"


def _token_response(ctx: AppContext, issued: auth_service.IssuedTokens) -> Response:
    response = model_response(
        TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token, expires_in=issued.expires_in)
    )
    response.set_cookie(
        REFRESH_COOKIE,
        issued.refresh_token,
        max_age=ctx.settings.refresh_token_ttl,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.cookie_secure,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def _account_limit(request: Request, ctx: AppContext, key: str) -> None:
    request.state.ratelimit = await ctx.limiter.enforce("auth", key)


async def _login(request: Request, session: AsyncSession, ctx: AppContext, email: str, password: str) -> Response:
    await _account_limit(request, ctx, "acct:" + normalize_email(email))
    # The account is read on a read session that is closed before argon2 runs: no write lock
    # (SQLite) and no pooled connection is held during the ~20-40 ms of hashing.
    async with ctx.db.unit_of_work(readonly=True) as reader:
        candidate = await auth_service.find_login_user(reader, email)
    user = await auth_service.check_credentials(ctx.hasher, candidate, password)
    issued = await auth_service.issue_tokens(session, ctx.tokens, user, refresh_ttl=ctx.settings.refresh_token_ttl)
    return _token_response(ctx, issued)


@router.post("/register", status_code=201, response_model=UserRead)
async def register(request: Request, body: RegisterRequest, session: SessionDep, ctx: Ctx) -> Response:
    """Create an account (no token: log in next)."""
    await _account_limit(request, ctx, "acct:" + normalize_email(body.email))
    user = await user_service.create_user(session, ctx.hasher, email=body.email, password=body.password, name=body.name)
    return model_response(UserRead.model_validate(user), status_code=201, headers={"Location": "/api/v1/users/me"})


@router.post("/login", response_model=TokenPair)
async def login(request: Request, body: LoginRequest, session: SessionDep, ctx: Ctx) -> Response:
    """Exchange email and password for an access token and a refresh token."""
    return await _login(request, session, ctx, body.email, body.password)


@router.post("/token", response_model=TokenPair)
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, ctx: Ctx
) -> Response:
    """The same login as an OAuth2 password form (``username`` = email), for the docs' Authorize button."""
    return await _login(request, session, ctx, form.username, form.password)


@router.post("/refresh", response_model=TokenPair)
async def refresh(request: Request, session: SessionDep, ctx: Ctx, body: RefreshRequest | None = None) -> Response:
    """Rotate a refresh token (from the body, else the HttpOnly cookie) into a new pair."""
    presented = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    if not presented:
        raise InvalidRefreshToken("Send the refresh token in the body or the refresh cookie.")
    # Only failed refreshes spend the per-IP login budget (guessing tokens is what it stops);
    # attempts in flight count as spent, and a spent budget refuses refreshes from that IP.
    ip = getattr(request.state, "client_ip", None) or (request.client.host if request.client else "unknown")
    forget_sessions_after_commit(session, ctx.auth_cache)  # reuse detection revokes a whole family
    async with ctx.limiter.failure_budget("auth", ip) as charge_failure:
        try:
            issued = await auth_service.refresh(
                session, ctx.tokens, refresh_token=presented, refresh_ttl=ctx.settings.refresh_token_ttl
            )
        except Unauthorized:
            await charge_failure()
            raise
    return _token_response(ctx, issued)


@router.post("/logout", status_code=204)
async def logout(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    claims: Annotated[AccessClaims, Depends(current_claims)],
    ctx: Ctx,
    body: LogoutRequest | None = None,
) -> Response:
    """Revoke this access token (until it expires) and the refresh token's family."""
    presented = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    await auth_service.logout(session, user, claims, refresh_token=presented, denylist=ctx.denylist)
    response = Response(status_code=204)
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=ctx.settings.cookie_secure
    )
    return response
