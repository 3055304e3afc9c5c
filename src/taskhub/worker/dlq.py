"""``taskhub dlq list|replay``: look at and re-drive the dead-letter queues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson

from taskhub.config import Settings
from taskhub.events import broker


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a DLQ: its consumer, event, attempts made and last error."""

    consumer: str
    event: dict[str, Any]
    attempts: int
    error: str


async def list_dead(settings: Settings, consumers: list[str]) -> list[DeadLetter]:
    """Every message in the DLQs of ``consumers``, oldest first. Nothing is removed: messages are
    fetched without ack and go back, in order, when the channel closes."""
    assert settings.broker_url
    found: list[DeadLetter] = []
    connection = await broker.connect(settings.broker_url)
    try:
        for consumer in consumers:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{settings.broker_queue_prefix}.{consumer}.dlq", durable=True)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                headers = message.headers or {}
                found.append(
                    DeadLetter(
                        consumer=consumer,
                        event=orjson.loads(message.body),
                        attempts=int(str(headers.get(broker.ATTEMPT_HEADER, 0))),
                        error=str(headers.get(broker.ERROR_HEADER, "")),
                    )
                )
            await channel.close()
    finally:
        await connection.close()
    return found


async def replay(settings: Settings, consumers: list[str], event_id: str | None = None) -> int:
    """Move the DLQ messages of ``consumers`` (only ``event_id``'s when given) back to their main
    queue with a fresh attempt count; returns how many. Each is published with a confirm before
    it is acked, so a crash can duplicate a message (harmless: handlers are idempotent) but never
    lose one."""
    assert settings.broker_url
    moved = 0
    connection = await broker.connect(settings.broker_url)
    try:
        for consumer in consumers:
            channel = await connection.channel(publisher_confirms=True)
            main = f"{settings.broker_queue_prefix}.{consumer}"
            queue = await channel.declare_queue(f"{main}.dlq", durable=True)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                if event_id is not None and message.message_id != event_id:
                    continue  # left unacked: back in the DLQ when the channel closes
                headers = {
                    k: v
                    for k, v in (message.headers or {}).items()
                    if k not in (broker.ATTEMPT_HEADER, broker.ERROR_HEADER)
                }
                copy = aio_pika.Message(
                    message.body,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                    type=message.type,
                    headers=headers,
                )
                await channel.default_exchange.publish(copy, routing_key=main, timeout=broker.PUBLISH_TIMEOUT)
                await message.ack()
                moved += 1
            await channel.close()
    finally:
        await connection.close()
    return moved
