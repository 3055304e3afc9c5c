"""Writing events to the outbox inside the caller's unit of work."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.core.observability import message_headers
from taskhub.core.timeutil import new_id
from taskhub.events.models import OutboxEvent


def event_values(
    *,
    type: str,
    aggregate_id: uuid.UUID,
    owner_id: uuid.UUID,
    version: int,
    changes: dict[str, Any],
    occurred_at: datetime,
) -> dict[str, Any]:
    """The column values of one outbox row (``event_id``, ``type``, ``aggregate_id``, ``owner_id``,
    ``payload``, ``created_at``, ``headers``), for a repository to insert with the change it describes.

    The payload is ``{event_id, type, occurred_at, task_id, owner_id, version, changes}``
    (SPEC "Events"); ``changes`` maps field name to ``[old, new]`` (JSON values). ``headers`` are
    the broker message's headers: ``x-request-id`` of the request being served (and its
    ``traceparent`` when tracing is on; ``core.observability.message_headers``), None outside one.
    """
    event_id = new_id()
    payload = {
        "event_id": str(event_id),
        "type": type,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "task_id": str(aggregate_id),
        "owner_id": str(owner_id),
        "version": version,
        "changes": changes,
    }
    return {
        "event_id": event_id,
        "type": type,
        "aggregate_id": aggregate_id,
        "owner_id": owner_id,
        "payload": payload,
        "created_at": occurred_at,
        "headers": message_headers() or None,
    }


def record(session: AsyncSession, **event: Any) -> OutboxEvent:
    """Add one event (the keyword arguments of :func:`event_values`) to the session: committed
    with the change, or not at all."""
    row = OutboxEvent(**event_values(**event))
    session.add(row)
    return row
