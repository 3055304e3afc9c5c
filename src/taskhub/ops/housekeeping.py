"""Periodic deletion of rows that can no longer matter.

- denylist entries (``revoked_access_tokens``) whose access token has expired anyway;
- refresh tokens expired for longer than one access-token lifetime (until then a revoked family
  must still end its live access tokens through their ``sid`` claim);
- idempotency records older than ``TASKHUB_IDEMPOTENCY_TTL``;
- outbox events sent longer than ``TASKHUB_OUTBOX_RETENTION`` ago (unsent ones are never
  deleted), and the processed-event records of that age (such events can no longer come back).

Each instance runs it every ``TASKHUB_PURGE_INTERVAL`` seconds (0 disables); concurrent runs on
several instances are harmless (each delete is idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from taskhub.auth import service as auth_service
from taskhub.config import Settings
from taskhub.core.timeutil import utcnow
from taskhub.db.session import Database
from taskhub.events import dispatch, relay
from taskhub.tasks import idempotency

log = structlog.get_logger("taskhub.housekeeping")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


async def purge_once(db: Database, settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Delete rows expired at ``now`` (default: the current time), each kind in its own unit of
    work; returns rows deleted per kind (``tokens``, ``idempotency_keys``, ``outbox_events``,
    ``processed_events``)."""
    now = now or utcnow()
    async with db.unit_of_work() as session:
        tokens = await auth_service.purge_expired(session, now, access_token_ttl=settings.access_token_ttl)
    async with db.unit_of_work() as session:
        keys = await idempotency.purge(session, older_than=now - timedelta(seconds=settings.idempotency_ttl))
    retention_cutoff = now - timedelta(seconds=settings.outbox_retention)
    async with db.unit_of_work() as session:
        sent = await relay.purge_sent(session, older_than=retention_cutoff)
    async with db.unit_of_work() as session:
        processed = await dispatch.purge_processed(session, older_than=retention_cutoff)
    return {"tokens": tokens, "idempotency_keys": keys, "outbox_events": sent, "processed_events": processed}


async def run_periodically(
    db: Database, settings: Settings, *, clock: Clock = utcnow, sleep: Sleep = asyncio.sleep
) -> None:
    """Call :func:`purge_once` every ``settings.purge_interval`` seconds until cancelled.

    ``clock`` and ``sleep`` are injectable so tests drive time instead of waiting for it.
    """
    while True:
        await sleep(settings.purge_interval)
        try:
            deleted = await purge_once(db, settings, now=clock())
            log.info("purged_expired_rows", **deleted)
        except Exception:  # a failed purge is retried next interval; it must not stop the loop
            log.warning("purge_failed", exc_info=True)
