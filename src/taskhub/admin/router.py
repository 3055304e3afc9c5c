"""``/admin``: every user and every task (role ``admin``; others get 403)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from taskhub.admin.schemas import AdminUserUpdate
from taskhub.auth.dependencies import AdminUser
from taskhub.core.errors import UnprocessableEntity, field_error
from taskhub.core.pagination import decode_cursor, encode_cursor
from taskhub.core.responses import model_response
from taskhub.core.timeutil import to_utc
from taskhub.core.validators import MAX_PAGE, NoNulStr
from taskhub.db.session import SessionDep
from taskhub.tasks import service as task_service
from taskhub.tasks.dependencies import TaskQueryDep
from taskhub.tasks.schemas import TaskPage
from taskhub.users import service as user_service
from taskhub.users.schemas import UserPage, UserRead

router = APIRouter(prefix="/admin", tags=["admin"])

_USER_SORT = "-created_at"


@router.get("/users", response_model=UserPage)
async def list_users(
    admin: AdminUser,
    session: SessionDep,
    q: Annotated[NoNulStr | None, Query(max_length=200, description="Matches email or name; empty = all")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """Every user, newest first, paged like tasks (``page`` with ``total``, or ``cursor``)."""
    if page is not None and cursor is not None:
        raise UnprocessableEntity(
            "Use either page or cursor, not both.",
            errors=[field_error(["query", "cursor"], "cannot be combined with page")],
        )
    after = None
    if cursor is not None:
        key = decode_cursor(cursor, _USER_SORT)
        try:
            after = (to_utc(datetime.fromisoformat(str(key["v"]))), uuid.UUID(str(key["id"])))
        except (KeyError, ValueError, OverflowError) as exc:
            raise UnprocessableEntity(
                "The cursor is not valid.", errors=[field_error(["query", "cursor"], "invalid cursor")]
            ) from exc
    users, total, has_more = await user_service.list_users(
        session, q=q or None, limit=limit, page=None if cursor else (page or 1), after=after
    )
    next_cursor = (
        encode_cursor(_USER_SORT, {"v": to_utc(users[-1].created_at).isoformat(), "id": str(users[-1].id)})
        if has_more and users
        else None
    )
    return model_response(
        UserPage(
            items=[UserRead.model_validate(u) for u in users],
            limit=limit,
            page=None if cursor else (page or 1),
            total=total,
            next_cursor=next_cursor,
        )
    )


@router.patch("/users/{user_id}", response_model=UserRead)
async def update_user(user_id: uuid.UUID, body: AdminUserUpdate, admin: AdminUser, session: SessionDep) -> Response:
    """Promote/demote or (de)activate a user; the last active admin cannot remove themselves (409)."""
    target = await user_service.get_user(session, user_id)
    updated = await user_service.admin_update(session, admin, target, role=body.role, is_active=body.is_active)
    return model_response(UserRead.model_validate(updated))


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: uuid.UUID, admin: AdminUser, session: SessionDep) -> Response:
    """Delete a user and all of their tasks."""
    target = await user_service.get_user(session, user_id)
    await user_service.admin_delete(session, admin, target)
    return Response(status_code=204)


@router.get("/tasks", response_model=TaskPage)
async def list_all_tasks(
    query: TaskQueryDep,
    admin: AdminUser,
    session: SessionDep,
    owner_id: Annotated[uuid.UUID | None, Query(description="Only this user's tasks")] = None,
) -> Response:
    """Every user's tasks: the same query as ``/tasks`` plus ``owner_id``."""
    query = query.model_copy(update={"owner_id": owner_id})
    return model_response(await task_service.list_page(session, query, owner_id=None))
