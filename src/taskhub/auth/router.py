"""``/auth``: register, login (JSON and OAuth2 form), refresh, logout, logout everywhere."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from taskhub.auth import service as auth_service
from taskhub.auth.dependencies import AuthLimits, AuthRateLimit, CurrentPrincipal, CurrentUser
from taskhub.auth.errors import InvalidRefreshToken
from taskhub.auth.schemas import LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, TokenPair
from taskhub.context import AppContext, ClientAddress, Ctx, WriteSession
from taskhub.core.errors import Unauthorized
from taskhub.core.openapi import headers, problem_responses
from taskhub.core.responses import model_response
from taskhub.urls import api_path
from taskhub.users import service as user_service
from taskhub.users.schemas import UserRead

router = APIRouter(prefix="/auth", tags=["auth"])
_TOKENS: dict[int | str, Any] = {200: {"headers": headers("Cache-Control", "Set-Cookie")}}

REFRESH_COOKIE = "taskhub_refresh"
COOKIE_PATH = api_path("/auth")
FORM_LOGIN_PATH = api_path("/auth/token")
"""The one endpoint that takes a form body, not JSON (the body guard must let it through)."""
FORM_LOGIN_HINT = (
    "This endpoint takes an OAuth2 form (application/x-www-form-urlencoded with username and password); "
    f"JSON clients use POST {api_path('/auth/login')}."
)


def _token_response(ctx: AppContext, issued: auth_service.IssuedTokens, limits: AuthLimits | None = None) -> Response:
    response = model_response(
        TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token, expires_in=issued.expires_in),
        headers=limits.headers() if limits else None,
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


async def _login(session: WriteSession, ctx: AppContext, limits: AuthLimits, email: str, password: str) -> Response:
    await limits.charge_account(email)
    # The account is read on a read session that is closed before argon2 runs: no write lock
    # (SQLite) and no pooled connection is held during the ~20-40 ms of hashing.
    async with ctx.db.unit_of_work(readonly=True) as reader:
        candidate = await auth_service.find_login_user(reader, email)
    user = await auth_service.check_credentials(ctx.hasher, candidate, password)
    issued = await auth_service.issue_tokens(session, ctx.tokens, user, refresh_ttl=ctx.settings.refresh_token_ttl)
    return _token_response(ctx, issued, limits)


@router.post(
    "/register",
    status_code=201,
    response_model=UserRead,
    responses={201: {"headers": headers("Location")}, **problem_responses(409)},
)
async def register(body: RegisterRequest, session: WriteSession, ctx: Ctx, limits: AuthRateLimit) -> Response:
    """Create an account (no token: log in next)."""
    await limits.charge_account(body.email)
    user = await user_service.create_user(
        session, ctx.hasher, email=body.email, password=body.password, name=body.name, time_zone=body.time_zone
    )
    headers = {"Location": api_path("/users/me"), **limits.headers()}
    return model_response(UserRead.model_validate(user), status_code=201, headers=headers)


@router.post("/login", response_model=TokenPair, responses={**_TOKENS, **problem_responses(401, 403)})
async def login(body: LoginRequest, session: WriteSession, ctx: Ctx, limits: AuthRateLimit) -> Response:
    """Exchange email and password for an access token and a refresh token."""
    return await _login(session, ctx, limits, body.email, body.password)


@router.post("/token", response_model=TokenPair, responses={**_TOKENS, **problem_responses(401, 403)})
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: WriteSession, ctx: Ctx, limits: AuthRateLimit
) -> Response:
    """The same login as an OAuth2 password form (``username`` = email), for the docs' Authorize button."""
    return await _login(session, ctx, limits, form.username, form.password)


@router.post("/refresh", response_model=TokenPair, responses={**_TOKENS, **problem_responses(401)})
async def refresh(
    request: Request, session: WriteSession, ctx: Ctx, ip: ClientAddress, body: RefreshRequest | None = None
) -> Response:
    """Rotate a refresh token (from the body, else the HttpOnly cookie) into a new pair."""
    presented = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    if not presented:
        raise InvalidRefreshToken("Send the refresh token in the body or the refresh cookie.")
    # Only failed refreshes spend the per-IP login budget (guessing tokens is what it stops);
    # attempts in flight count as spent, and a spent budget refuses refreshes from that IP.
    async with ctx.limiter.failure_budget("auth", ip) as charge_failure:
        try:
            issued = await auth_service.refresh(
                session,
                ctx.tokens,
                refresh_token=presented,
                refresh_ttl=ctx.settings.refresh_token_ttl,
                auth_cache=ctx.auth_cache,
            )
        except Unauthorized:
            await charge_failure()
            raise
    return _token_response(ctx, issued)


@router.post("/logout", status_code=204, responses={204: {"headers": headers("Set-Cookie")}})
async def logout(
    request: Request, principal: CurrentPrincipal, session: WriteSession, ctx: Ctx, body: LogoutRequest | None = None
) -> Response:
    """Revoke this access token (until it expires) and the refresh token's family."""
    presented = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    await auth_service.logout(
        session,
        principal.user,
        principal.claims,
        refresh_token=presented,
        denylist=ctx.denylist,
        auth_cache=ctx.auth_cache,
    )
    response = Response(status_code=204)
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=ctx.settings.cookie_secure
    )
    return response


@router.post("/logout-all", status_code=204, responses={204: {"headers": headers("Set-Cookie")}})
async def logout_all(user: CurrentUser, session: WriteSession, ctx: Ctx) -> Response:
    """Sign out everywhere: every token issued to the caller before now stops working, this one included."""
    await user_service.sign_out_everywhere(session, user, auth_cache=ctx.auth_cache)
    response = Response(status_code=204)
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=ctx.settings.cookie_secure
    )
    return response
