"""``/notifications``: the caller's notifications, unread count, mark read, email setting."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from taskhub.auth.dependencies import CurrentUser
from taskhub.context import ReadSession, WriteSession
from taskhub.core.pagination import PageParamsDep
from taskhub.core.responses import model_response
from taskhub.core.timeutil import utcnow
from taskhub.notifications import repository as repo
from taskhub.notifications import service
from taskhub.notifications.schemas import (
    MarkedRead,
    MarkRead,
    NotificationPage,
    NotificationPreferencesBody,
    UnreadCount,
)

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get("", response_model=NotificationPage)
async def list_notifications(
    user: CurrentUser,
    session: ReadSession,
    paging: PageParamsDep,
    unread: Annotated[bool, Query(description="Only unread notifications")] = False,
) -> Response:
    """The caller's notifications, newest first, paged like ``/tasks`` (``page`` or ``cursor``)."""
    return model_response(await service.inbox_page(session, user.id, paging, unread_only=unread))


@router.get("/unread-count", response_model=UnreadCount)
async def unread_count(user: CurrentUser, session: ReadSession) -> Response:
    """How many of the caller's notifications are unread (the dashboard's badge)."""
    return model_response(UnreadCount(unread=await repo.count(session, user.id, unread_only=True)))


@router.post("/read", response_model=MarkedRead)
async def mark_read(body: MarkRead, user: CurrentUser, session: WriteSession) -> Response:
    """Mark the given notifications (or every unread one) read; ids of others are ignored."""
    marked = await repo.mark_read(session, user.id, body.ids, utcnow())
    unread = await repo.count(session, user.id, unread_only=True)
    return model_response(MarkedRead(marked=marked, unread=unread))


@router.get("/preferences", response_model=NotificationPreferencesBody)
async def get_preferences(user: CurrentUser, session: ReadSession) -> Response:
    """The caller's notification settings."""
    return model_response(NotificationPreferencesBody(email=await repo.email_enabled(session, user.id)))


@router.put("/preferences", response_model=NotificationPreferencesBody)
async def put_preferences(body: NotificationPreferencesBody, user: CurrentUser, session: WriteSession) -> Response:
    """Turn notification emails on or off for the caller."""
    await repo.set_email_enabled(session, user.id, body.email)
    return model_response(body)
