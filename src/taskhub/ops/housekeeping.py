"""Periodic deletion of rows that can no longer matter.

- denylist entries (``revoked_access_tokens``) whose access token has expired anyway;
- refresh tokens expired for longer than one access-token lifetime (until then a revoked family
  must still end its live access tokens through their ``sid`` claim);
- idempotency records older than ``TASKHUB_IDEMPOTENCY_TTL``.

Each instance runs it every ``TASKHUB_PURGE_INTERVAL`` seconds (0 disables); concurrent runs on
several instances are harmless (each delete is idempotent).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from taskhub.auth import service as auth_service
from taskhub.config import Settings
from taskhub.core.timeutil import utcnow
from taskhub.db.session import Database
from taskhub.tasks import service as task_service

log = structlog.get_logger("taskhub.housekeeping")


async def purge_once(db: Database, settings: Settings) -> dict[str, int]:
    """Delete expired rows, each kind in its own unit of work; returns rows deleted per kind."""
    now = utcnow()
    async with db.unit_of_work() as session:
        tokens = await auth_service.purge_expired(session, now, access_token_ttl=settings.access_token_ttl)
    async with db.unit_of_work() as session:
        keys = await task_service.purge_idempotency_keys(
            session, older_than=now - timedelta(seconds=settings.idempotency_ttl)
        )
    return {"tokens": tokens, "idempotency_keys": keys}


async def run_periodically(db: Database, settings: Settings) -> None:
    """Call :func:`purge_once` every ``settings.purge_interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(settings.purge_interval)
        try:
            deleted = await purge_once(db, settings)
            log.info("purged_expired_rows", **deleted)
        except Exception:  # a failed purge is retried next interval; it must not stop the loop
            log.warning("purge_failed", exc_info=True)
