"""``/users/me``: the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter, Response

from taskhub.auth.dependencies import CurrentUser
from taskhub.context import Ctx, WriteSession
from taskhub.core.openapi import problem_responses
from taskhub.core.responses import model_response
from taskhub.users import service as user_service
from taskhub.users.schemas import AccountDelete, PasswordChange, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserRead)
async def read_me(user: CurrentUser) -> Response:
    """The caller's account."""
    return model_response(UserRead.model_validate(user))


@router.patch(
    "/me",
    response_model=UserRead,
    responses=problem_responses(
        409, 412, descriptions={412: "A task that the new time zone moves was changed at the same time; retry"}
    ),
)
async def update_me(body: UserUpdate, user: CurrentUser, session: WriteSession, ctx: Ctx) -> Response:
    """Change name, email (needs ``current_password``) and/or ``time_zone`` (IANA name; the
    caller's all-day tasks move to the end of their day in the new zone, in the same transaction)."""
    updated = await user_service.update_profile(
        session,
        ctx.hasher,
        user,
        name=body.name,
        email=body.email,
        current_password=body.current_password,
        auth_cache=ctx.auth_cache,
        time_zone=body.time_zone,
        cache=ctx.cache,
    )
    return model_response(UserRead.model_validate(updated))


@router.post("/me/password", status_code=204)
async def change_password(body: PasswordChange, user: CurrentUser, session: WriteSession, ctx: Ctx) -> Response:
    """Change the password; every token issued before stops working."""
    await user_service.change_password(
        session,
        ctx.hasher,
        user,
        current_password=body.current_password,
        new_password=body.new_password,
        auth_cache=ctx.auth_cache,
    )
    return Response(status_code=204)


@router.delete("/me", status_code=204, responses=problem_responses(409, descriptions={409: "The last active admin"}))
async def delete_me(body: AccountDelete, user: CurrentUser, session: WriteSession, ctx: Ctx) -> Response:
    """Delete the account and all of its tasks."""
    await user_service.delete_account(
        session, ctx.hasher, user, current_password=body.current_password, auth_cache=ctx.auth_cache
    )
    return Response(status_code=204)
