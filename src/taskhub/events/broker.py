"""RabbitMQ, and only here: the topology, publishing with confirms, and the queue names.

Topology (``docs/operations.md``, "Events"), with ``X`` = ``TASKHUB_BROKER_EXCHANGE`` (default
``taskhub.events``) and ``P`` = ``TASKHUB_BROKER_QUEUE_PREFIX`` (default ``taskhub``):

- ``X``: durable topic exchange; each event is published with routing key = its type
  (``task.created`` ...), persistent, ``message_id`` = ``event_id``, JSON body = the SPEC payload.
- ``P.<consumer>`` (``notifications``, ``analytics``): durable queue bound to ``X`` with ``task.#``,
  ``x-single-active-consumer`` so that one worker at a time takes its messages in queue order
  (order per task holds; the other workers stand by and take over at once when it dies).
- ``P.<consumer>.retry.<n>``: durable queue with ``x-message-ttl`` = the n-th retry delay that
  dead-letters back into ``P.<consumer>`` (retries with backoff, dead-letter + TTL).
- ``P.<consumer>.dlq``: durable queue of messages that failed every attempt (``taskhub dlq``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractRobustConnection

from taskhub.core.observability import event_scope

BINDING_KEY = "task.#"
ATTEMPT_HEADER = "x-taskhub-attempt"
ERROR_HEADER = "x-taskhub-error"
CONNECT_TIMEOUT = 5.0  # seconds to open a connection before giving up (the relay retries)
PUBLISH_TIMEOUT = 10.0  # seconds to wait for one publisher confirm
PING_TIMEOUT = 2.0  # seconds /ready waits for a round trip on the publisher's connection


@dataclass(frozen=True, slots=True)
class QueueNames:
    """The queue names of one consumer (see the module docstring)."""

    main: str
    dlq: str
    retries: tuple[str, ...]


def queue_names(prefix: str, consumer: str, retry_count: int) -> QueueNames:
    """The queues of ``consumer`` under ``prefix`` with ``retry_count`` retry levels."""
    main = f"{prefix}.{consumer}"
    return QueueNames(
        main=main, dlq=f"{main}.dlq", retries=tuple(f"{main}.retry.{i}" for i in range(1, retry_count + 1))
    )


async def connect(url: str) -> AbstractConnection:
    """A plain (not self-reconnecting) connection: callers notice an outage and reconnect themselves.

    Raises:
        OSError, aio_pika.exceptions.AMQPError, asyncio.TimeoutError: the broker is unreachable.
    """
    return await aio_pika.connect(url, timeout=CONNECT_TIMEOUT)


async def connect_robust(url: str) -> AbstractRobustConnection:
    """A connection that reconnects and restores its channels, queues and consumers by itself
    (the worker's: its consumers must survive a broker restart)."""
    return await aio_pika.connect_robust(url, timeout=CONNECT_TIMEOUT)


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    """The durable topic exchange ``name``."""
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_main_queues(
    channel: AbstractChannel, exchange: AbstractExchange, prefix: str, consumers: Sequence[str]
) -> None:
    """Declare and bind every consumer's main queue. The relay does this before it publishes, so
    no event is dropped as unroutable before a worker has ever started."""
    for consumer in consumers:
        queue = await channel.declare_queue(
            queue_names(prefix, consumer, 0).main, durable=True, arguments={"x-single-active-consumer": True}
        )
        await queue.bind(exchange, BINDING_KEY)


async def declare_retry_queues(channel: AbstractChannel, names: QueueNames, delays: Sequence[float]) -> None:
    """Declare the retry queues (TTL = ``delays[i]`` seconds, then back to the main queue) and the DLQ."""
    for name, delay in zip(names.retries, delays, strict=True):
        await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-message-ttl": max(1, round(delay * 1000)),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names.main,
            },
        )
    await channel.declare_queue(names.dlq, durable=True)


def event_message(payload: dict[str, Any], *, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    """A persistent JSON message of one event; ``message_id`` is its ``event_id``."""
    return aio_pika.Message(
        orjson.dumps(payload),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(payload["event_id"]),
        type=str(payload["type"]),
        headers=headers or {},
    )


class Publisher:
    """Publishes events to the exchange with publisher confirms, over one connection it opens on
    first use and drops on any error (the next call reconnects).

    ``publish_ordered`` sends the events of one aggregate one after another and different
    aggregates concurrently, so per-task order holds while confirms overlap.
    """

    def __init__(self, url: str, exchange: str, queue_prefix: str, consumers: Sequence[str]) -> None:
        self.url = url
        self.exchange_name = exchange
        self.queue_prefix = queue_prefix
        self.consumers = tuple(consumers)
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._connection is not None and not self._connection.is_closed

    async def _ensure(self) -> AbstractExchange:
        if self._exchange is not None and self.connected:
            return self._exchange
        await self.close()
        connection = await connect(self.url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await declare_exchange(channel, self.exchange_name)
            await declare_main_queues(channel, exchange, self.queue_prefix, self.consumers)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._exchange = connection, exchange
        return exchange

    async def publish_ordered(
        self, events: Sequence[dict[str, Any]], headers: Sequence[Mapping[str, str] | None] | None = None
    ) -> None:
        """Publish ``events`` (SPEC payloads) and return once the broker confirmed every one.
        ``headers`` (one per event, the outbox rows') become each message's headers: the request
        id that caused it, and the trace context of its publication (``event_scope``).

        Raises:
            Exception: any connection, channel or confirm failure (nack, timeout); the
                connection is dropped, nothing is known to be confirmed.
        """
        try:
            exchange = await self._ensure()
            chains: dict[str, list[tuple[dict[str, Any], Mapping[str, str] | None]]] = {}
            for event, event_headers in zip(events, headers or [None] * len(events), strict=True):
                chains.setdefault(str(event["task_id"]), []).append((event, event_headers))

            async def send(chain: list[tuple[dict[str, Any], Mapping[str, str] | None]]) -> None:
                for event, event_headers in chain:
                    with event_scope(f"publish {self.exchange_name}", event, event_headers, kind="producer") as out:
                        await exchange.publish(
                            event_message(event, headers=dict(out)),
                            routing_key=str(event["type"]),
                            timeout=PUBLISH_TIMEOUT,
                        )

            await asyncio.gather(*(send(chain) for chain in chains.values()))
        except BaseException:
            await self.close()
            raise

    async def ping(self) -> None:
        """One round trip on the open connection (a channel opened and closed), for ``/ready``.

        Raises:
            ConnectionError: no connection is open. Exception: the broker did not answer in time.
        """
        connection = self._connection
        if connection is None or connection.is_closed:
            raise ConnectionError("the publisher is not connected")
        channel = await asyncio.wait_for(connection.channel(), timeout=PING_TIMEOUT)
        await channel.close()

    async def close(self) -> None:
        """Close the connection (errors while closing are ignored: it may be dead already)."""
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):  # closing a broken connection: nothing to do about it
                await asyncio.wait_for(connection.close(), timeout=2)
