"""The outbox relay: unsent outbox rows -> the broker (or in-process handlers), in order, once confirmed.

One relay is active at a time (the *leader*): on PostgreSQL it holds a session-level advisory lock
on a connection of its own and reads and marks rows on that same connection, so a relay whose
connection died cannot go on marking; on SQLite (one host) it holds an exclusive ``flock`` on
``<data_dir>/relay.lock``. Every other relay (each ``serve`` process runs one; ``taskhub relay``
runs one) stands by and tries for the lock every ``STANDBY_RETRY`` seconds.

A pass of the leader: read up to ``TASKHUB_RELAY_BATCH_SIZE`` unsent rows in ``id`` order, hand
them to the sink (RabbitMQ with publisher confirms, or the in-process handlers), and only then
mark them sent, giving each the next ``seq``; then fan them out to live streams. A sink failure
(broker down) leaves the rows unsent and the pass is retried with backoff: writes never notice.
Order per task holds because one leader publishes, in ``id`` order, and the writes of one task
are serialized by its version check (a later event of a task always has a larger id).
Delivery is at least once (a crash between confirm and mark republishes); consumers deduplicate
on ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

import orjson
import structlog
from sqlalchemy import Table, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from taskhub.config import Settings
from taskhub.core.metrics import metrics
from taskhub.core.observability import event_scope
from taskhub.core.timeutil import utcnow
from taskhub.db.session import Database
from taskhub.events import dispatch
from taskhub.events.broker import Publisher
from taskhub.events.models import OutboxEvent

log = structlog.get_logger("taskhub.relay")

ADVISORY_LOCK_KEY = 0x7A5C_4B00_0000_0001  # pg_try_advisory_lock(bigint): "taskhub relay"
STANDBY_RETRY = 2.0  # seconds between a standby's attempts to become leader
MAX_BACKOFF = 5.0  # seconds, the longest pause after a failed pass

_outbox = cast(Table, OutboxEvent.__table__)


@dataclass(frozen=True, slots=True)
class Published:
    """An event that was delivered and marked sent: its stream position and owner."""

    seq: int
    owner_id: str
    payload: dict[str, Any]


class Sink(Protocol):
    """Where the relay delivers events. ``deliver`` returns once every event is safe (confirmed
    by the broker, or applied by every in-process consumer) and raises otherwise."""

    async def deliver(
        self, events: Sequence[dict[str, Any]], headers: Sequence[Mapping[str, str] | None] | None = None
    ) -> None: ...

    async def close(self) -> None: ...


class BrokerSink:
    """Delivers to RabbitMQ through :class:`~taskhub.events.broker.Publisher`."""

    def __init__(self, settings: Settings) -> None:
        assert settings.broker_url
        self.publisher = Publisher(
            settings.broker_url, settings.broker_exchange, settings.broker_queue_prefix, dispatch.consumer_names()
        )

    name = "rabbitmq"

    async def deliver(
        self, events: Sequence[dict[str, Any]], headers: Sequence[Mapping[str, str] | None] | None = None
    ) -> None:
        """Publish (each with its outbox row's ``headers``) and wait for the confirms.
        Raises: any broker error."""
        await self.publisher.publish_ordered(events, headers)

    async def close(self) -> None:
        """Close the broker connection."""
        await self.publisher.close()


class InProcessSink:
    """Embedded mode (no broker): applies each event to every consumer here, in order.

    A handler that fails is retried on the next passes (the consumers that succeeded skip the
    event then: :func:`~taskhub.events.dispatch.apply`); after ``max_attempts`` failures of one
    event it is logged as ``event_dead_lettered`` and skipped, so one bad event cannot stop the
    relay (there is no dead-letter queue without a broker).
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.max_attempts = len(settings.worker_retry_delays) + 1
        self._failures: dict[str, int] = {}

    name = "in-process"

    async def deliver(
        self, events: Sequence[dict[str, Any]], headers: Sequence[Mapping[str, str] | None] | None = None
    ) -> None:
        """Apply every event to every consumer, each in the context of the request that caused it
        (``headers``: the outbox rows'; logs and spans). Raises: the first handler error (retry later)."""
        for event, event_headers in zip(events, headers or [None] * len(events), strict=True):
            for consumer in dispatch.consumers():
                try:
                    with event_scope(f"process {consumer.name}", event, event_headers, kind="consumer"):
                        await dispatch.apply(self.db, consumer, event, self.settings)
                except Exception:
                    key = f"{consumer.name}:{event['event_id']}"
                    self._failures[key] = attempts = self._failures.get(key, 0) + 1
                    if attempts < self.max_attempts:
                        raise
                    log.error(
                        "event_dead_lettered", consumer=consumer.name, event=event, attempts=attempts, exc_info=True
                    )
                    self._failures.pop(key, None)

    async def close(self) -> None:
        """Nothing to close."""


Fanout = Callable[[Sequence[Published]], Awaitable[None]]


class _Leadership(Protocol):
    @contextlib.asynccontextmanager
    def connection(self) -> AsyncIterator[AsyncConnection]: ...

    async def release(self) -> None: ...


@dataclass
class _PgLeadership:
    """The advisory lock and the connection holding it, on which every read and mark is made."""

    conn: AsyncConnection

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        yield self.conn

    async def release(self) -> None:
        with contextlib.suppress(Exception):  # the connection may be dead: the lock went with it
            await self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
            await self.conn.commit()
        with contextlib.suppress(Exception):
            await self.conn.close()


@dataclass
class _FileLeadership:
    """An exclusive ``flock``; each pass takes a pooled connection (SQLite: one host, one file)."""

    db: Database
    fd: int

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        async with self.db.primary.connect() as conn:
            yield conn

    async def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


#: Why the relay does not start behind PgBouncer without a direct URL: its leader lock, a session
#: advisory lock, would be taken on a server connection PgBouncer hands to other clients after the
#: transaction, so two relays could lead at once (and asyncpg's prepared statements fail there).
NEEDS_DIRECT_URL = "TASKHUB_RELAY_DATABASE_URL (a direct URL of the primary) is required behind PgBouncer"


def _relay_engine(db: Database, settings: Settings) -> AsyncEngine:
    """The leader's engine: ``relay_database_url`` or the primary's URL."""
    # The leader's connection lives as long as its leadership: it comes from an engine of its own
    # (no pool), not from the request pool, which it would shrink by one for good.
    return create_async_engine(
        settings.relay_database_url or db.url,
        poolclass=NullPool,
        json_serializer=lambda v: orjson.dumps(v).decode(),
        json_deserializer=orjson.loads,
        connect_args={"server_settings": {"application_name": "taskhub-relay"}},
    )


async def _acquire(db: Database, settings: Settings, engine: AsyncEngine | None) -> _Leadership | None:
    if engine is not None:
        conn = await engine.connect()
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})).scalar()
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if got:
            return _PgLeadership(conn)
        await conn.close()
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / "relay.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return _FileLeadership(db, fd)


@dataclass
class RelayStatus:
    """What ``/ready`` reports of this process's relay."""

    leader: bool = False
    last_error: str | None = None
    last_success: datetime | None = None
    published: int = 0


@dataclass
class Relay:
    """One relay; :meth:`run` until cancelled. ``fanout`` receives each marked batch (live streams)."""

    db: Database
    settings: Settings
    sink: Sink
    fanout: Fanout | None = None
    status: RelayStatus = field(default_factory=RelayStatus)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _next_seq: int = 0
    _engine: AsyncEngine | None = None

    def wake(self) -> None:
        """Start the next pass now (a local commit may have written events)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the pass in progress (a graceful stop: nothing is left
        half-done in the database, unlike a cancellation in the middle of a statement)."""
        self._stopping.set()
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run(self) -> None:
        """Stand by or lead until :meth:`stop` (or cancelled); never raises for a broker or database outage."""
        if self.settings.database_pgbouncer and not self.settings.relay_database_url:
            # A setting, not an outage: said once; events wait in the outbox (never lost).
            self.status.last_error = NEEDS_DIRECT_URL
            log.error("relay_not_started", error=NEEDS_DIRECT_URL)
            await self._stopping.wait()
            return
        backoff = 0.1
        while not self._stopping.is_set():
            leadership: _Leadership | None = None
            try:
                if self.db.dialect == "postgresql" and self._engine is None:
                    self._engine = _relay_engine(self.db, self.settings)
                leadership = await _acquire(self.db, self.settings, self._engine)
            except Exception as exc:
                self.status.last_error = repr(exc)
                log.warning("relay_lock_failed", exc_info=True)
            if leadership is None:
                await self._pause(STANDBY_RETRY)
                continue
            self.status.leader = True
            metrics().relay_leader.set(1)
            log.info("relay_leading")
            try:
                async with leadership.connection() as conn:
                    self._next_seq = await self._max_seq(conn) + 1
                while not self._stopping.is_set():
                    try:
                        async with leadership.connection() as conn:
                            moved = await self.pass_once(conn)
                        backoff = 0.1
                    except _DatabaseError:
                        raise
                    except Exception as exc:  # the sink failed: keep the lock, retry with backoff
                        self.status.last_error = repr(exc)
                        metrics().relay_failures.labels("deliver").inc()
                        log.warning("relay_delivery_failed", error=repr(exc), retry_in=backoff)
                        await self._pause(backoff)
                        backoff = min(MAX_BACKOFF, backoff * 2)
                        continue
                    if not moved:
                        await self._idle()
            except _DatabaseError as exc:
                self.status.last_error = repr(exc.__cause__)
                metrics().relay_failures.labels("database").inc()
                log.warning("relay_database_failed", error=repr(exc.__cause__))
                await self._pause(STANDBY_RETRY)
            finally:
                self.status.leader = False
                metrics().relay_leader.set(0)
                await leadership.release()
        if self._engine is not None:
            await self._engine.dispose()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.settings.relay_poll_interval)
        self._wake.clear()

    async def _max_seq(self, conn: AsyncConnection) -> int:
        try:
            value = (await conn.execute(select(func.max(_outbox.c.seq)))).scalar()
            await conn.rollback()
        except Exception as exc:
            raise _DatabaseError from exc
        return int(value or 0)

    async def pass_once(self, conn: AsyncConnection) -> int:
        """One pass on the leader's connection; returns how many events were delivered.

        Raises:
            _DatabaseError: the database failed (the leader steps down).
            Exception: the sink failed (nothing was marked).
        """
        try:
            stmt = (
                select(_outbox.c.id, _outbox.c.owner_id, _outbox.c.payload, _outbox.c.headers)
                .where(_outbox.c.sent_at.is_(None))
                .order_by(_outbox.c.id)
                .limit(self.settings.relay_batch_size)
            )
            if self.db.dialect == "sqlite":
                # SQLite's write connections start with BEGIN IMMEDIATE: polling there would take
                # the write lock ten times a second. The read engine takes none.
                async with self.db.readers[0].connect() as reader:
                    rows = (await reader.execute(stmt)).all()
            else:
                rows = (await conn.execute(stmt)).all()
                # rollback, not commit: a read has nothing to commit, and a commit would wake this relay
                await conn.rollback()
        except Exception as exc:
            raise _DatabaseError from exc
        if not rows:
            return 0
        await self.sink.deliver([row.payload for row in rows], [row.headers for row in rows])
        now = utcnow()
        published = [Published(self._next_seq + i, str(row.owner_id), row.payload) for i, row in enumerate(rows)]
        try:
            await conn.execute(
                update(_outbox)
                .where(_outbox.c.id == bindparam("row_id"))
                .values(sent_at=now, seq=bindparam("new_seq")),
                [{"row_id": row.id, "new_seq": p.seq} for row, p in zip(rows, published, strict=True)],
            )
            await conn.commit()
        except Exception as exc:
            raise _DatabaseError from exc
        self._next_seq += len(rows)
        self.status.published += len(rows)
        metrics().relay_published.labels(getattr(self.sink, "name", "other")).inc(len(rows))
        self.status.last_success = now
        self.status.last_error = None
        if self.fanout is not None:
            try:
                await self.fanout(published)
            except Exception:  # live streams catch up on their next reconnect (Last-Event-ID)
                log.warning("relay_fanout_failed", exc_info=True)
        return len(rows)


class _DatabaseError(Exception):
    """The leader's database connection failed (wraps the cause)."""


def make_sink(db: Database, settings: Settings) -> Sink:
    """The broker sink with ``TASKHUB_BROKER_URL``, else the in-process sink (embedded mode)."""
    if settings.broker_url:
        return BrokerSink(settings)
    return InProcessSink(db, settings)


async def backlog(session: AsyncSession) -> dict[str, Any]:
    """Unsent events and the age in seconds of the oldest (``/ready``'s outbox lag)."""
    stmt = select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.sent_at.is_(None))
    count, oldest = (await session.execute(stmt)).one()
    lag = round((utcnow() - oldest).total_seconds(), 3) if oldest is not None else 0.0
    return {"unsent": int(count), "lag_s": lag}


async def purge_sent(session: AsyncSession, older_than: datetime) -> int:
    """Delete events sent before ``older_than`` (past the retention window); returns rows deleted.

    Unsent events are never purged, however old.
    """
    stmt = delete(OutboxEvent).where(OutboxEvent.sent_at.is_not(None), OutboxEvent.sent_at < older_than)
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
