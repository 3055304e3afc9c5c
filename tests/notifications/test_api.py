"""Notifications and analytics in embedded mode (the in-process relay), on SQLite and PostgreSQL:
completion notices, the reminder scheduler, email through a real SMTP server on loopback with a
per-user opt-out, the unread count and mark-read, and the daily history."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI

from taskhub.config import Settings
from taskhub.context import AppContext
from taskhub.notifications.service import schedule_reminders
from tests.conftest import Api, client_for

H = dict[str, str]


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[str, Inbox]]:
    """A real SMTP server on a free loopback port; yields its URL and inbox."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}", inbox
    controller.stop()


def ctx_of(app: FastAPI) -> AppContext:
    ctx: AppContext = app.state.ctx
    return ctx


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll ``check`` (async, returns a truthy value when done) and return its value."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_completion_notifies_emails_unless_opted_out_and_can_be_marked_read(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings], smtp: tuple[str, Inbox]
) -> None:
    url, inbox = smtp
    app = await app_factory(settings_factory(smtp_url=url, smtp_from="hub@example.com"))
    async with client_for(app) as client:
        api = Api(client)
        ann, bob = await api.user("ann@x.io", name="Ann"), await api.user("bob@x.io")
        assert (await client.get("/api/v1/notifications/preferences", headers=bob)).json() == {"email": True}
        r = await client.put("/api/v1/notifications/preferences", json={"email": False}, headers=bob)
        assert r.status_code == 200 and r.json() == {"email": False}
        for who, title in ((ann, "Ann's report"), (bob, "Bob's report")):
            task = await api.task(who, title=title)
            r = await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=who)
            assert r.status_code == 200

        async def listed(who: H) -> Any:
            body = (await client.get("/api/v1/notifications", headers=who)).json()
            return body if body["items"] else None

        ann_page = await eventually(lambda: listed(ann))
        bob_page = await eventually(lambda: listed(bob))
        assert [(n["kind"], n["title"], n["read_at"]) for n in ann_page["items"]] == [
            ("completed", "Ann's report", None)
        ]
        assert [n["title"] for n in bob_page["items"]] == ["Bob's report"]
        assert ann_page["total"] == 1 and ann_page["page"] == 1

        await eventually(lambda: _async(len(inbox.messages) >= 1))
        await asyncio.sleep(2.5)  # one more sender pass: Bob's (opted out) must not come
        assert [(m["To"], m["From"], m["Subject"]) for m in inbox.messages] == [
            ("ann@x.io", "hub@example.com", "Task completed: Ann's report")
        ]
        assert "Hello Ann" in inbox.messages[0].get_payload()

        assert (await client.get("/api/v1/notifications/unread-count", headers=ann)).json() == {"unread": 1}
        # Bob's notification id is not Ann's to mark
        r = await client.post("/api/v1/notifications/read", json={"ids": [bob_page["items"][0]["id"]]}, headers=ann)
        assert r.json() == {"marked": 0, "unread": 1}
        r = await client.post("/api/v1/notifications/read", json={}, headers=ann)
        assert r.json() == {"marked": 1, "unread": 0}
        assert (await client.get("/api/v1/notifications?unread=true", headers=ann)).json()["items"] == []
        assert (await client.get("/api/v1/notifications/unread-count", headers=bob)).json() == {"unread": 1}
        assert (await client.get("/api/v1/notifications")).status_code == 401


async def _async(value: Any) -> Any:
    return value


async def test_the_scheduler_reminds_once_per_task_and_kind_however_many_run(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    app = await app_factory(settings_factory(scheduler_interval=3600))
    now = datetime.now(UTC)
    async with client_for(app) as client:
        api = Api(client)
        h = await api.user("sched@x.io")
        soon = await api.task(h, title="soon", due_date=(now + timedelta(hours=2)).isoformat())
        await api.task(h, title="later", due_date=(now + timedelta(days=2)).isoformat())
        late = await api.task(h, title="late", due_date=(now + timedelta(minutes=30)).isoformat())
        await api.task(h, title="done", status="done", due_date=(now + timedelta(hours=1)).isoformat())
        await api.task(h, title="no date")
        db, settings = ctx_of(app).db, ctx_of(app).settings
        # Three schedulers at once, one hour later: "late" is overdue by then, "soon" due within 24 h.
        at = now + timedelta(hours=1)
        results = await asyncio.gather(*(schedule_reminders(db, settings, now=at) for _ in range(3)))
        assert sum(r["due_soon"] for r in results) == 1
        assert sum(r["overdue"] for r in results) == 1
        assert await schedule_reminders(db, settings, now=at) == {"due_soon": 0, "overdue": 0}
        # Another hour on: "soon" is not yet overdue; nothing new
        assert await schedule_reminders(db, settings, now=at + timedelta(minutes=30)) == {"due_soon": 0, "overdue": 0}
        items = (await client.get("/api/v1/notifications", headers=h)).json()["items"]
        assert sorted((n["kind"], n["title"], n["task_id"]) for n in items) == [
            ("due_soon", "soon", soon["id"]),
            ("overdue", "late", late["id"]),
        ]
        # paging: limit 1 gives a cursor to the second
        first = (await client.get("/api/v1/notifications?limit=1&page=1", headers=h)).json()
        assert first["total"] == 2 and len(first["items"]) == 1


async def test_the_scheduler_reads_all_day_tasks_by_the_end_of_their_day(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    """An all-day task (America/New_York) is due soon in the 24 h before its day ends there and
    overdue once it has ended, not when the day ends in UTC."""
    app = await app_factory(settings_factory(scheduler_interval=3600))
    async with client_for(app) as client:
        body = {"email": "allday@x.io", "password": "correct horse battery staple", "name": "A"}
        registered = await client.post("/api/v1/auth/register", json={**body, "time_zone": "America/New_York"})
        assert registered.status_code == 201
        api = Api(client)
        tokens = await api.login("allday@x.io")
        h = {"Authorization": f"Bearer {tokens['access_token']}"}
        task = await api.task(h, title="rent", due_date="2030-01-10")
        assert task["due_date"] == "2030-01-11T04:59:59.999999Z"  # midnight in New York, -05:00
        db, settings = ctx_of(app).db, ctx_of(app).settings
        before_window = datetime(2030, 1, 10, 4, 59, tzinfo=UTC)
        assert await schedule_reminders(db, settings, now=before_window) == {"due_soon": 0, "overdue": 0}
        utc_next_day = datetime(2030, 1, 11, 0, 30, tzinfo=UTC)  # 19:30 on the 10th in New York
        assert await schedule_reminders(db, settings, now=utc_next_day) == {"due_soon": 1, "overdue": 0}
        day_over = datetime(2030, 1, 11, 5, 0, tzinfo=UTC)  # 00:00 on the 11th in New York
        assert await schedule_reminders(db, settings, now=day_over) == {"due_soon": 0, "overdue": 1}


async def test_history_counts_created_and_completed_per_day(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    app = await app_factory(settings_factory())
    async with client_for(app) as client:
        api = Api(client)
        h, other = await api.user("hist@x.io"), await api.user("other@x.io")
        a = await api.task(h, title="a")
        await api.task(h, title="b")
        await api.task(h, title="c", status="done")
        await api.task(other, title="not mine")
        await asyncio.sleep(1.1)
        assert (await client.patch(f"/api/v1/tasks/{a['id']}", json={"status": "done"}, headers=h)).status_code == 200

        async def today() -> Any:
            body = (await client.get("/api/v1/tasks/stats/history?days=3", headers=h)).json()
            return body if body["items"][-1]["completed"] == 2 else None

        body = await eventually(today)
        assert body["days"] == 3 and len(body["items"]) == 3
        assert [i["day"] for i in body["items"]] == [
            (datetime.now(UTC).date() - timedelta(days=d)).isoformat() for d in (2, 1, 0)
        ]
        assert body["items"][0] == {
            "day": body["items"][0]["day"],
            "created": 0,
            "completed": 0,
            "avg_completion_s": None,
        }
        last = body["items"][-1]
        assert (last["created"], last["completed"]) == (3, 2)
        # "c" was created done (0 s), "a" took >= 1 s: the average is half of a's time
        assert 0.5 <= last["avg_completion_s"] < 5
        assert len((await client.get("/api/v1/tasks/stats/history", headers=h)).json()["items"]) == 30
        assert (await client.get("/api/v1/tasks/stats/history?days=0", headers=h)).status_code == 422
        assert (await client.get("/api/v1/tasks/stats/history?days=367", headers=h)).status_code == 422


def test_a_title_with_line_breaks_cannot_add_email_headers() -> None:
    from taskhub.notifications.service import email_message

    message = email_message(Settings(smtp_from="hub@x.io"), "a@x.io", "A", "overdue", "pay\r\nBcc: evil@x.io\nnow")
    assert message["Subject"] == "Overdue: pay Bcc: evil@x.io now"
    assert message["Bcc"] is None


async def test_an_unreachable_smtp_server_is_tried_five_times_then_given_up(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    from sqlalchemy import select

    from taskhub.notifications.models import Notification
    from taskhub.notifications.service import MAX_EMAIL_ATTEMPTS, send_pending_emails

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens here once the socket is closed
    app = await app_factory(settings_factory(smtp_url=f"smtp://127.0.0.1:{closed_port}"))
    db, settings = ctx_of(app).db, ctx_of(app).settings
    async with client_for(app) as client:
        api = Api(client)
        h = await api.user("nosmtp@x.io")
        task = await api.task(h, title="t")
        await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=h)

        async def email_state() -> Any:
            async with db.unit_of_work(readonly=True) as session:
                row = (await session.execute(select(Notification.email_status, Notification.email_attempts))).first()
            return tuple(row) if row else None

        await eventually(email_state)
        for _ in range(MAX_EMAIL_ATTEMPTS):
            assert await send_pending_emails(db, settings) == 0
        assert await email_state() == ("failed", MAX_EMAIL_ATTEMPTS)
