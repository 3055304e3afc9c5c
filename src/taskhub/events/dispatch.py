"""Consumers of task events and the one way to apply an event: once per consumer.

A consumer is a name (its queue: ``<prefix>.<name>``) and a handler. :func:`apply` runs the
handler and writes the ``processed_events`` record in one unit of work, so an event delivered
twice (a redelivery after a crash, a relay that published it again) changes nothing the second
time. The worker (broker mode) and the relay (embedded mode) both go through :func:`apply`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.config import Settings
from taskhub.core.timeutil import utcnow
from taskhub.db.session import Database
from taskhub.db.upsert import insert_for
from taskhub.events.models import ProcessedEvent

Event = dict[str, Any]
"""A SPEC event payload: ``{event_id, type, occurred_at, task_id, owner_id, version, changes}``."""

Handler = Callable[[AsyncSession, Event, Settings], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Consumer:
    """A named handler of task events (``types``: the event types it acts on; others are only recorded)."""

    name: str
    handler: Handler
    types: frozenset[str]


def consumers() -> tuple[Consumer, ...]:
    """Every consumer, in the order the in-process relay runs them."""
    from taskhub.analytics.handlers import CONSUMER as analytics
    from taskhub.notifications.handlers import CONSUMER as notifications

    return (notifications, analytics)


def consumer_names() -> tuple[str, ...]:
    """The names of :func:`consumers` (the broker's queue suffixes)."""
    return tuple(c.name for c in consumers())


def by_name(name: str) -> Consumer:
    """The consumer called ``name``. Raises: KeyError."""
    for consumer in consumers():
        if consumer.name == name:
            return consumer
    raise KeyError(name)


async def _claim(session: AsyncSession, consumer: str, event_id: uuid.UUID) -> bool:
    # INSERT ... ON CONFLICT DO NOTHING: a concurrent unit of work with the same event waits on
    # the key and then sees the conflict, so exactly one of them runs the handler.
    values = {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()}
    stmt = insert_for(session, ProcessedEvent).values(values).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def apply(db: Database, consumer: Consumer, event: Event, settings: Settings) -> bool:
    """Apply ``event`` to ``consumer`` unless it already was; True when the handler ran now.

    Raises:
        Exception: whatever the handler raised; nothing of it (nor the record) is committed.
    """
    async with db.unit_of_work() as session:
        if not await _claim(session, consumer.name, uuid.UUID(str(event["event_id"]))):
            return False
        if event.get("type") in consumer.types:
            await consumer.handler(session, event, settings)
    return True


async def purge_processed(session: AsyncSession, older_than: datetime) -> int:
    """Delete processed-event records older than ``older_than`` (events that old are purged from
    the outbox too and can no longer be redelivered); returns rows deleted."""
    result = await session.execute(delete(ProcessedEvent).where(ProcessedEvent.processed_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)
