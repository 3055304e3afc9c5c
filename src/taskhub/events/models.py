"""The ``outbox`` table (events written in the same transaction as the change they describe) and
``processed_events`` (which consumer applied which event: the idempotency record of handlers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, PrimaryKeyConstraint, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskhub.core.timeutil import utcnow
from taskhub.db.base import Base, UTCDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL gets a 64-bit identity.
OutboxId = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEvent(Base):
    """An event waiting for (or done with) publication; ``id`` gives the publication order.

    ``seq`` is given by the relay when the broker confirmed the event (1, 2, 3, ... in the order
    events were published): the position a live stream resumes from (``Last-Event-ID``). Ids are
    handed out at insert, so a transaction that commits late can make a smaller id visible after
    a larger one; ``seq`` never goes back.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "sent_at", "id"),
        Index("ix_outbox_seq", "seq", unique=True),
        Index("ix_outbox_owner_seq", "owner_id", "seq"),
    )

    id: Mapped[int] = mapped_column(OutboxId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    type: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    seq: Mapped[int | None] = mapped_column(OutboxId, nullable=True)
    # Message headers (``x-request-id``, ``traceparent``): the request that caused the event.
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class ProcessedEvent(Base):
    """``consumer`` applied ``event_id``: written in the handler's own unit of work, so a
    redelivered event finds it and is skipped (exactly-once effect over at-least-once delivery)."""

    __tablename__ = "processed_events"
    __table_args__ = (PrimaryKeyConstraint("consumer", "event_id"),)

    consumer: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
