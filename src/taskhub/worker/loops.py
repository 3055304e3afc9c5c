"""The periodic loops of a worker (and of ``serve`` in embedded mode): the reminder scheduler and
the email sender. Both are safe to run in several processes at once (unique reminders, emails
claimed with ``SKIP LOCKED``)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from taskhub.config import Settings
from taskhub.db.session import Database
from taskhub.notifications import service as notifications

log = structlog.get_logger("taskhub.worker")

EMAIL_INTERVAL = 2.0  # seconds between looks for pending emails


async def _pause(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_scheduler(db: Database, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Create due-soon and overdue notifications every ``TASKHUB_SCHEDULER_INTERVAL`` seconds,
    until ``stop`` is set (after the pass in progress) or the task is cancelled."""
    while stop is None or not stop.is_set():
        try:
            created = await notifications.schedule_reminders(db, settings)
            if any(created.values()):
                log.info("reminders_created", **created)
        except Exception:  # retried at the next interval
            log.warning("scheduler_failed", exc_info=True)
        await _pause(stop, settings.scheduler_interval)


async def run_email_sender(db: Database, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Send pending notification emails (only with ``TASKHUB_SMTP_URL``) until ``stop`` is set."""
    if not settings.smtp_url:
        return
    while stop is None or not stop.is_set():
        try:
            while await notifications.send_pending_emails(db, settings) > 0 and not (stop and stop.is_set()):
                pass
        except Exception:
            log.warning("email_sender_failed", exc_info=True)
        await _pause(stop, EMAIL_INTERVAL)
