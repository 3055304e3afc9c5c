"""Notification rules: what is notified, the reminder scheduler, email delivery, the inbox.

- ``completed``: one per ``task.completed`` event (from the worker, or the in-process relay).
- ``due_soon``: a task not done whose due date is within the next 24 h; ``overdue``: past due and
  not done. Both come from :func:`schedule_reminders`, once per task and kind (a unique key), so
  any number of workers may run the scheduler at the same time.
- Email: with ``TASKHUB_SMTP_URL``, each new notification of a user who did not turn email off is
  ``pending`` until :func:`send_pending_emails` delivers it (``MAX_EMAIL_ATTEMPTS`` tries).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.config import Settings
from taskhub.core.pagination import Edge, PageParams, Slice, decode_cursor, encode_cursor
from taskhub.core.timeutil import new_id, utcnow
from taskhub.db.session import Database
from taskhub.events.dispatch import Event
from taskhub.notifications import repository as repo
from taskhub.notifications.schemas import CURSOR_KEY, NotificationPage, NotificationRead

log = structlog.get_logger("taskhub.notifications")

MAX_EMAIL_ATTEMPTS = 5
SCAN_LIMIT = 1000  # tasks per kind per scheduler pass; the next pass takes the rest

SUBJECTS = {
    "completed": "Task completed: {title}",
    "due_soon": "Due within 24 hours: {title}",
    "overdue": "Overdue: {title}",
}


def _values(
    user_id: uuid.UUID, task_id: uuid.UUID, kind: str, title: str, dedupe_key: str, *, email: bool
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "user_id": user_id,
        "task_id": task_id,
        "kind": kind,
        "title": title[:200],
        "dedupe_key": dedupe_key,
        "created_at": utcnow(),
        "read_at": None,
        "email_status": "pending" if email else "none",
        "email_attempts": 0,
    }


async def on_task_completed(session: AsyncSession, event: Event, settings: Settings) -> None:
    """Handler of ``task.completed``: one ``completed`` notification for the task's owner."""
    owner_id = uuid.UUID(str(event["owner_id"]))
    task_id = uuid.UUID(str(event["task_id"]))
    title = await repo.task_title(session, owner_id, task_id)
    if title is None:
        title_change = event.get("changes", {}).get("title")
        title = str(title_change[1]) if title_change else "(deleted task)"
    email = bool(settings.smtp_url) and await repo.email_enabled(session, owner_id)
    await repo.insert(session, _values(owner_id, task_id, "completed", title, str(event["event_id"]), email=email))


async def schedule_reminders(db: Database, settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """One scheduler pass at ``now``: ``due_soon`` and ``overdue`` notifications for every task
    that needs one and has none; returns how many were created per kind."""
    now = now or utcnow()
    created = {"due_soon": 0, "overdue": 0}
    async with db.unit_of_work() as session:
        candidates = await repo.reminder_candidates(session, now, limit=SCAN_LIMIT)
        owners = {row["owner_id"] for rows in candidates.values() for row in rows}
        wanting = await repo.emails_wanted(session, owners) if settings.smtp_url else set()
        for kind, rows in candidates.items():
            for row in rows:
                values = _values(
                    row["owner_id"],
                    row["id"],
                    kind,
                    row["title"],
                    f"{row['id']}:{kind}",
                    email=row["owner_id"] in wanting,
                )
                created[kind] += await repo.insert(session, values)
    return created


def _smtp_params(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    params: dict[str, Any] = {
        "hostname": parts.hostname or "localhost",
        "port": parts.port or (465 if parts.scheme == "smtps" else 25),
        "use_tls": parts.scheme == "smtps",
        "start_tls": False if parts.scheme == "smtps" else None,  # STARTTLS when the server offers it
        "timeout": 10,
    }
    if parts.username:
        params["username"] = unquote(parts.username)
        params["password"] = unquote(parts.password or "")
    return params


def email_message(settings: Settings, to: str, name: str, kind: str, title: str) -> EmailMessage:
    """The email of one notification."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    # A title may hold line breaks; a header may not (that would be header injection).
    message["Subject"] = SUBJECTS[kind].format(title=" ".join(title.split()))
    message.set_content(f"Hello {name},\n\n{message['Subject']}.\n\n-- Taskhub\n")
    return message


async def send_pending_emails(db: Database, settings: Settings, *, batch: int = 50) -> int:
    """Send up to ``batch`` pending emails (claimed with ``SKIP LOCKED``); returns how many were sent.

    A failed send is retried on later calls, ``MAX_EMAIL_ATTEMPTS`` times in all, then ``failed``.
    """
    if not settings.smtp_url:
        return 0
    params = _smtp_params(settings.smtp_url)
    sent = 0
    async with db.unit_of_work() as session:
        for row in await repo.claim_pending_emails(session, limit=batch):
            attempts = row["email_attempts"] + 1
            try:
                await aiosmtplib.send(
                    email_message(settings, row["email"], row["name"], row["kind"], row["title"]), **params
                )
            except Exception as exc:  # SMTP, network or a bad address: each counts as one attempt
                log.warning("email_failed", notification_id=str(row["id"]), attempts=attempts, error=repr(exc))
                status = "failed" if attempts >= MAX_EMAIL_ATTEMPTS else "pending"
                await repo.set_email_status(session, row["id"], status, attempts)
                continue
            await repo.set_email_status(session, row["id"], "sent", attempts)
            sent += 1
    return sent


async def inbox_page(
    session: AsyncSession, user_id: uuid.UUID, paging: PageParams, *, unread_only: bool
) -> NotificationPage:
    """One page of the user's notifications, newest first (offset mode with ``total``, or keyset)."""
    limit = paging.limit
    page = paging.offset_page
    if page is None:
        assert paging.cursor is not None
        after = decode_cursor(paging.cursor, "-created_at", CURSOR_KEY)
        rows: Sequence[Any] = await repo.page(
            session, user_id, unread_only=unread_only, offset=None, after=after, limit=limit + 1
        )
        total = None
    else:
        rows = await repo.page(
            session, user_id, unread_only=unread_only, offset=(page - 1) * limit, after=None, limit=limit + 1
        )
        total = await repo.count(session, user_id, unread_only=unread_only)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more and rows:
        next_cursor = encode_cursor("-created_at", CURSOR_KEY, rows[-1]["created_at"], rows[-1]["id"])
    return NotificationPage(
        items=[NotificationRead.model_validate(dict(r)) for r in rows],
        limit=limit,
        page=page,
        total=total,
        next_cursor=next_cursor,
    )


async def inbox_slice(
    session: AsyncSession, user_id: uuid.UUID, *, first: int, after: str | None, unread_only: bool
) -> Slice[NotificationRead]:
    """Up to ``first`` of the user's notifications after the cursor ``after``, newest first, each
    with its own cursor (the keyset paging of ``GET /notifications``, for a Relay-style connection).

    Raises: UnprocessableEntity (bad cursor).
    """
    decoded = decode_cursor(after, "-created_at", CURSOR_KEY) if after is not None else None
    rows = await repo.page(session, user_id, unread_only=unread_only, offset=None, after=decoded, limit=first + 1)
    edges = [
        Edge(
            NotificationRead.model_validate(dict(row)),
            encode_cursor("-created_at", CURSOR_KEY, row["created_at"], row["id"]),
        )
        for row in rows[:first]
    ]
    return Slice(edges, has_next=len(rows) > first)
