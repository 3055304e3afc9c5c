"""Idempotency keys for ``POST /tasks`` (IETF draft-ietf-httpapi-idempotency-key-header).

The first request with a key reserves it in the same unit of work as the task it creates, and
stores the response body; a retry with the same key and body within the TTL gets that body again.
The same key with another body is a 422; a retry racing the first request (before it commits) a 409.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.core.errors import field_error
from taskhub.core.timeutil import to_utc
from taskhub.tasks import repository as task_repo
from taskhub.tasks.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from taskhub.tasks.models import IdempotencyKey

MAX_KEY_LENGTH = 255


def fingerprint(body: BaseModel) -> str:
    """SHA-256 (hex) of the request body's canonical JSON (keys sorted), to tell bodies apart."""
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(slots=True)
class Claim:
    """Either a stored response to ``replay`` (JSON object) or a fresh ``record`` to complete."""

    replay: dict[str, Any] | None = None
    record: IdempotencyKey | None = None

    def complete(self, response: dict[str, Any]) -> None:
        """Store ``response`` (JSON object) as the answer to replay; flushed with the caller's work."""
        if self.record is not None:
            self.record.response = response


async def claim(
    session: AsyncSession, user_id: uuid.UUID, key: str, body: BaseModel, *, ttl: int, now: datetime
) -> Claim:
    """Replay the stored response of ``(user_id, key)``, or reserve the key for this request.

    ``ttl`` is in seconds; an expired record is replaced.

    Raises:
        IdempotencyKeyReused: same key, different body (422).
        IdempotencyKeyInFlight: a concurrent request with the same key has not finished (409).
    """
    request_hash = fingerprint(body)
    stored = await task_repo.get_idempotency_key(session, user_id, key)
    if stored is not None and to_utc(stored.created_at) > now - timedelta(seconds=ttl):
        if stored.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request body.",
                errors=[field_error(["header", "Idempotency-Key"], "key reused with a different body")],
            )
        return Claim(replay=stored.response)
    if stored is not None:
        await task_repo.delete_idempotency_key(session, stored)
        await session.flush()
    record = IdempotencyKey(user_id=user_id, key=key, request_hash=request_hash, response={}, created_at=now)
    task_repo.add_idempotency_key(session, record)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise IdempotencyKeyInFlight(
            "Another request with this Idempotency-Key is in progress; retry shortly."
        ) from exc
    return Claim(record=record)


async def purge(session: AsyncSession, *, older_than: datetime) -> int:
    """Delete records created before ``older_than``; returns rows deleted."""
    return await task_repo.purge_idempotency_keys(session, older_than)
