"""RabbitMQ for the event tests: per-test exchange and queue names, a TCP proxy the test can cut.

Each test gets its own exchange (``TASKHUB_BROKER_EXCHANGE``) and queue prefix
(``TASKHUB_BROKER_QUEUE_PREFIX``) on the machine's RabbitMQ, deleted afterwards, so parallel runs
never see each other's messages. An unreachable broker fails the test in CI and skips it elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue

from tests.conftest import IN_CI

AMQP_URL = os.environ.get("TASKHUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
CONSUMERS = ("notifications", "analytics")


@dataclass
class BrokerNames:
    """A test's exchange and queue prefix, and a connection for the test's own queues."""

    url: str
    exchange: str
    prefix: str
    connection: AbstractConnection
    channel: AbstractChannel
    own_queues: list[str] = field(default_factory=list)

    def settings(self, url: str | None = None) -> dict[str, Any]:
        """Settings overrides that point the service at this test's names."""
        return {"broker_url": url or self.url, "broker_exchange": self.exchange, "broker_queue_prefix": self.prefix}

    def env(self, url: str | None = None) -> dict[str, str]:
        """The same as environment variables (for subprocesses)."""
        return {
            "TASKHUB_BROKER_URL": url or self.url,
            "TASKHUB_BROKER_EXCHANGE": self.exchange,
            "TASKHUB_BROKER_QUEUE_PREFIX": self.prefix,
        }

    async def bind_queue(self) -> AbstractQueue:
        """A queue of the test's own, bound to the exchange with ``task.#``."""
        exchange = await self.channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        name = f"{self.prefix}.probe.{len(self.own_queues)}"
        queue = await self.channel.declare_queue(name, durable=True)
        await queue.bind(exchange, "task.#")
        self.own_queues.append(name)
        return queue

    async def drain(
        self, queue: AbstractQueue, count: int, within: float = 30.0
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Exactly ``count`` messages from ``queue`` (acked), waiting up to ``within`` seconds,
        then half a second more to catch any extra one."""
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        extra_until: float | None = None
        while True:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                got.append(message)
                continue
            now = loop.time()
            if len(got) >= count:
                if extra_until is None:
                    extra_until = now + 0.5
                elif now > extra_until:
                    return got
            elif now > deadline:
                return got
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def broker_names() -> AsyncIterator[BrokerNames]:
    """Unique names on the real RabbitMQ; the exchange and every queue under the prefix are
    deleted afterwards."""
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        message = f"RabbitMQ at {AMQP_URL} is unreachable: {exc!r}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    tag = secrets.token_hex(4)
    names = BrokerNames(AMQP_URL, f"test.{tag}.events", f"test.{tag}", connection, await connection.channel())
    yield names
    channel = await connection.channel()
    queues = [
        f"{names.prefix}.{c}{suffix}" for c in CONSUMERS for suffix in ("", ".dlq", ".retry.1", ".retry.2", ".retry.3")
    ]
    for queue in [*queues, *names.own_queues]:
        with contextlib.suppress(Exception):
            await channel.queue_delete(queue)
            channel = await connection.channel() if channel.is_closed else channel
    with contextlib.suppress(Exception):
        await channel.exchange_delete(names.exchange)
    await connection.close()


def payload(message: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    """The JSON body of a message."""
    body: dict[str, Any] = orjson.loads(message.body)
    return body


class TcpProxy:
    """A TCP proxy on a free loopback port to ``target``, which the test can :meth:`cut` (every
    connection closed, new ones refused) and :meth:`restore` on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.ServerProcess | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, base: str) -> str:
        """``base`` (an amqp:// URL) with host and port replaced by the proxy's."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(base)
        netloc = parts.netloc.rsplit("@", 1)
        creds = netloc[0] + "@" if len(netloc) == 2 else ""
        return urlunsplit((parts.scheme, f"{creds}127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        """Stop listening and close every open connection (the broker 'goes away')."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.close()
        self._writers.clear()

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self.start()


@pytest_asyncio.fixture
async def amqp_proxy() -> AsyncIterator[TcpProxy]:
    """A :class:`TcpProxy` to the machine's RabbitMQ."""
    from urllib.parse import urlsplit

    parts = urlsplit(AMQP_URL)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    yield proxy
    await proxy.cut()
