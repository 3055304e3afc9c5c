"""``/admin/users``: every user (role ``admin``; others get 403). Part of the users service
(``docs/architecture.md``, "Services"); ``/admin/tasks`` belongs to the tasks service
(``tasks/admin_router.py``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from taskhub.admin.schemas import AdminUserUpdate
from taskhub.auth.dependencies import AdminUser
from taskhub.context import Ctx, ReadSession, WriteSession
from taskhub.core.openapi import problem_responses
from taskhub.core.pagination import PageParamsDep
from taskhub.core.responses import model_response
from taskhub.core.validators import PlainText
from taskhub.users import service as user_service
from taskhub.users.schemas import UserPage, UserRead

router = APIRouter(prefix="/admin", tags=["admin"], responses=problem_responses(403))


@router.get("/users", response_model=UserPage)
async def list_users(
    admin: AdminUser,
    session: ReadSession,
    paging: PageParamsDep,
    q: Annotated[PlainText | None, Query(max_length=200, description="Matches email or name; empty = all")] = None,
) -> Response:
    """Every user, newest first, paged like tasks (``page`` with ``total``, or ``cursor``)."""
    return model_response(await user_service.list_users(session, q=q or None, paging=paging))


@router.patch("/users/{user_id}", response_model=UserRead, responses=problem_responses(404, 409))
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, admin: AdminUser, session: WriteSession, ctx: Ctx
) -> Response:
    """Promote/demote or (de)activate a user; the last active admin cannot remove themselves (409)."""
    target = await user_service.get_user(session, user_id)
    updated = await user_service.admin_update(
        session, admin, target, role=body.role, is_active=body.is_active, auth_cache=ctx.auth_cache
    )
    return model_response(UserRead.model_validate(updated))


@router.delete("/users/{user_id}", status_code=204, responses=problem_responses(404, 409))
async def delete_user(user_id: uuid.UUID, admin: AdminUser, session: WriteSession, ctx: Ctx) -> Response:
    """Delete a user and all of their tasks."""
    target = await user_service.get_user(session, user_id)
    await user_service.admin_delete(session, admin, target, auth_cache=ctx.auth_cache)
    return Response(status_code=204)
