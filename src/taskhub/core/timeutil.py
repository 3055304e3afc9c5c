"""UTC time helpers and time-ordered ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import uuid_utils


def utcnow() -> datetime:
    """The current time as an aware UTC datetime, truncated to microseconds."""
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, so newer rows sort later by id."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC; a naive one is assumed to already be UTC (database reads)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
