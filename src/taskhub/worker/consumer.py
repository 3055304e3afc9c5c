"""The broker consumer of ``taskhub worker``: one durable queue per consumer, handlers applied once.

For each message of ``<prefix>.<consumer>``: parse the event, run the handler through
:func:`taskhub.events.dispatch.apply` (handler + processed-event record in one unit of work), then
ack. A handler error sends a copy to ``<prefix>.<consumer>.retry.<n>`` (its TTL is the n-th of
``TASKHUB_WORKER_RETRY_DELAYS``; it then dead-letters back into the main queue) and acks the
original; after the last retry the message goes to ``<prefix>.<consumer>.dlq`` with the error in a
header. Copies are published with confirms before the ack, so a crash in between duplicates a
message (deduplicated by the processed-event record) and never loses one; a crash mid-handler
leaves the message unacked and the broker redelivers it.

Order: the main queues are single-active-consumer (one worker at a time takes a queue's messages,
in order); within a worker at most ``TASKHUB_WORKER_CONCURRENCY`` handlers run at once, never two
for the same task, each task's events in delivery order. A retried event is applied after the
task's later events (documented in ``docs/operations.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from taskhub.config import Settings
from taskhub.core.metrics import metrics
from taskhub.core.observability import event_scope
from taskhub.db.session import Database
from taskhub.events import broker, dispatch

log = structlog.get_logger("taskhub.worker")

DLQ_POLL_INTERVAL = 15.0  # seconds between two reads of the dead-letter queues' depth


@dataclass
class _TaskLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Worker:
    """Consumes every consumer's queue until :meth:`stop`; see the module docstring."""

    def __init__(self, db: Database, settings: Settings, consumers: Sequence[dispatch.Consumer] | None = None) -> None:
        assert settings.broker_url, "the worker needs TASKHUB_BROKER_URL"
        self.db = db
        self.settings = settings
        self.consumers = tuple(consumers or dispatch.consumers())
        self.delays = list(settings.worker_retry_delays)
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._locks: dict[str, _TaskLock] = {}
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self.applied = 0
        self._dlq_watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, declare the topology and start consuming (returns once consuming).

        Raises:
            Exception: the broker is unreachable.
        """
        assert self.settings.broker_url
        self._connection = await broker.connect_robust(self.settings.broker_url)
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.settings.worker_prefetch)
        exchange = await broker.declare_exchange(channel, self.settings.broker_exchange)
        prefix = self.settings.broker_queue_prefix
        await broker.declare_main_queues(channel, exchange, prefix, [c.name for c in self.consumers])
        self._channel = channel
        for consumer in self.consumers:
            names = broker.queue_names(prefix, consumer.name, len(self.delays))
            await broker.declare_retry_queues(channel, names, self.delays)
            queue = await channel.get_queue(names.main)

            async def on_message(
                message: AbstractIncomingMessage, c: dispatch.Consumer = consumer, n: broker.QueueNames = names
            ) -> None:
                await self._handle(c, n, message)

            await queue.consume(on_message)
        self._dlq_watch = asyncio.create_task(self._watch_dead_letters())
        log.info("worker_consuming", queues=[f"{prefix}.{c.name}" for c in self.consumers])

    async def _watch_dead_letters(self) -> None:
        """Report each consumer's DLQ depth (``taskhub_dlq_messages``) every ``DLQ_POLL_INTERVAL``
        seconds: re-declaring a queue with its own arguments changes nothing and answers its
        message count. A channel of its own, so a broker error here never touches consumption."""
        assert self._connection is not None
        gauge = metrics().dlq_messages
        while True:
            try:
                channel = await self._connection.channel()
                try:
                    for consumer in self.consumers:
                        names = broker.queue_names(self.settings.broker_queue_prefix, consumer.name, len(self.delays))
                        queue = await channel.declare_queue(names.dlq, durable=True)
                        count = queue.declaration_result.message_count
                        gauge.labels(consumer.name).set(count or 0)
                finally:
                    await channel.close()
            except Exception:  # the broker is away: the robust connection reconnects, try again later
                log.warning("dlq_depth_unavailable", exc_info=True)
            await asyncio.sleep(DLQ_POLL_INTERVAL)

    async def stop(self) -> None:
        """Close the connection (unacked messages go back to their queues)."""
        if self._dlq_watch is not None:
            self._dlq_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dlq_watch
            self._dlq_watch = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _handle(
        self, consumer: dispatch.Consumer, names: broker.QueueNames, message: AbstractIncomingMessage
    ) -> None:
        try:
            event: dict[str, Any] = orjson.loads(message.body)
            key = str(uuid.UUID(str(event["task_id"])))
            uuid.UUID(str(event["event_id"]))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            await self._dead_letter(names, message, f"unreadable event: {exc!r}", self._attempt(message))
            return
        # Taken before the first await, in delivery order: the task's events run in that order.
        entry = self._locks.setdefault(key, _TaskLock())
        entry.users += 1
        try:
            async with entry.lock, self._slots:
                await self._apply(consumer, names, message, event)
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._locks.pop(key, None)

    @staticmethod
    def _attempt(message: AbstractIncomingMessage) -> int:
        raw = (message.headers or {}).get(broker.ATTEMPT_HEADER, 1)
        return int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else 1

    async def _apply(
        self,
        consumer: dispatch.Consumer,
        names: broker.QueueNames,
        message: AbstractIncomingMessage,
        event: dict[str, Any],
    ) -> None:
        # Log lines carry event_id and the request_id of the request that caused the event; with
        # tracing on, the handling is a span in that request's trace (message headers).
        with event_scope(f"process {names.main}", event, message.headers, kind="consumer"):
            await self._apply_in_scope(consumer, names, message, event)

    async def _apply_in_scope(
        self,
        consumer: dispatch.Consumer,
        names: broker.QueueNames,
        message: AbstractIncomingMessage,
        event: dict[str, Any],
    ) -> None:
        m = metrics()
        attempt = self._attempt(message)
        start = time.perf_counter()
        try:
            applied = await dispatch.apply(self.db, consumer, event, self.settings)
        except Exception as exc:
            m.worker_handler_duration.labels(consumer.name).observe(time.perf_counter() - start)
            error = f"{type(exc).__name__}: {exc}"[:500]
            if attempt <= len(self.delays):
                log.warning(
                    "handler_failed_retrying",
                    consumer=consumer.name,
                    event_id=event["event_id"],
                    attempt=attempt,
                    error=error,
                )
                await self._publish_copy(names.retries[attempt - 1], message, attempt + 1, error)
                m.worker_messages.labels(consumer.name, "retried").inc()
            else:
                log.error(
                    "handler_failed_dead_lettered",
                    consumer=consumer.name,
                    event_id=event["event_id"],
                    attempt=attempt,
                    error=error,
                )
                await self._dead_letter(names, message, error, attempt)
                return
            await message.ack()
            return
        seconds = time.perf_counter() - start
        m.worker_handler_duration.labels(consumer.name).observe(seconds)
        self.applied += int(applied)
        await message.ack()
        outcome = "handled" if applied else "duplicate"
        m.worker_messages.labels(consumer.name, outcome).inc()
        log.info(
            "event_handled",
            consumer=consumer.name,
            type=event.get("type"),
            outcome=outcome,
            attempt=attempt,
            duration_ms=round(seconds * 1000, 2),
        )

    async def _dead_letter(
        self, names: broker.QueueNames, message: AbstractIncomingMessage, error: str, attempt: int
    ) -> None:
        await self._publish_copy(names.dlq, message, attempt, error)
        await message.ack()
        metrics().worker_messages.labels(names.main.rsplit(".", 1)[-1], "dead_lettered").inc()

    async def _publish_copy(self, queue: str, message: AbstractIncomingMessage, attempt: int, error: str) -> None:
        assert self._channel is not None
        headers = {**(message.headers or {}), broker.ATTEMPT_HEADER: attempt, broker.ERROR_HEADER: error}
        copy = aio_pika.Message(
            message.body,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            type=message.type,
            headers=headers,
        )
        await self._channel.default_exchange.publish(copy, routing_key=queue, timeout=broker.PUBLISH_TIMEOUT)
