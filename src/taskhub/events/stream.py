"""Live updates: ``GET /events/stream`` (Server-Sent Events) and the fan-out behind it.

Each event a relay marks sent carries its ``seq`` (the publication order, see
:class:`~taskhub.events.models.OutboxEvent`). The relay hands every marked batch to the fan-out:
with Redis (``TASKHUB_REDIS_URL``) it is published on one pub/sub channel and every instance's
listener passes it to its local :class:`StreamHub`; without Redis the hub is fed in-process (one
process runs both the relay and the streams: embedded mode). A stream sends the caller's own
events only, with ``id: <seq>``; on reconnect, ``Last-Event-ID: <seq>`` first replays the caller's
events after that position from the outbox (kept for ``TASKHUB_OUTBOX_RETENTION``), then goes on
live, skipping what the replay already sent: no gap, no duplicate. Comment lines every
``TASKHUB_SSE_HEARTBEAT`` seconds keep proxies from closing an idle stream, and at each the token
is checked again: the stream ends when the access token expires or is revoked. When the instance
drains (SIGTERM, ``ops/drain.py``) every stream ends and new ones get 503, so clients resume on
another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from redis.asyncio import Redis
from sqlalchemy import select

from taskhub.auth import service as auth_service
from taskhub.auth.dependencies import CurrentPrincipal
from taskhub.context import Ctx
from taskhub.core.errors import DomainError, ServiceUnavailable
from taskhub.core.metrics import metrics
from taskhub.db.session import Database
from taskhub.events.models import OutboxEvent
from taskhub.events.relay import Published

log = structlog.get_logger("taskhub.stream")

QUEUE_SIZE = 1024  # events buffered per stream; a stream that falls further behind is ended
REPLAY_LIMIT = 10_000  # events replayed on one reconnect at most (then the client resumes again)


@dataclass(eq=False)
class Subscription:
    """One open stream's queue; ``overflowed`` when the client could not keep up."""

    owner_id: str
    queue: asyncio.Queue[Published] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False


class StreamHub:
    """The streams open in this process, by owner; :meth:`deliver` hands events to them."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    @contextlib.contextmanager
    def subscribe(self, owner_id: str) -> Iterator[Subscription]:
        """Receive ``owner_id``'s events while the block runs."""
        sub = Subscription(owner_id)
        self._subs.setdefault(owner_id, set()).add(sub)
        gauge = metrics().sse_streams
        gauge.inc()
        try:
            yield sub
        finally:
            gauge.dec()
            subs = self._subs.get(owner_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[owner_id]

    def deliver(self, events: Sequence[Published]) -> None:
        """Queue each event on its owner's streams (never blocks)."""
        for event in events:
            for sub in self._subs.get(event.owner_id, ()):
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    sub.overflowed = True

    async def publish(self, events: Sequence[Published]) -> None:
        """The in-process fan-out (a relay's ``fanout``)."""
        self.deliver(events)

    @property
    def open_streams(self) -> int:
        """How many streams are open here."""
        return sum(len(s) for s in self._subs.values())


class RedisFanout:
    """Fan-out across instances: a relay publishes each batch on ``channel``; :meth:`listen`
    (one per instance) passes what arrives to the local hub."""

    def __init__(self, redis: Redis, channel: str, hub: StreamHub) -> None:
        self.redis = redis
        self.channel = channel
        self.hub = hub

    async def publish(self, events: Sequence[Published]) -> None:
        """Publish one batch (one message: ``[{seq, owner_id, payload}, ...]``)."""
        body = orjson.dumps([{"seq": e.seq, "owner_id": e.owner_id, "payload": e.payload} for e in events])
        await self.redis.publish(self.channel, body)

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Subscribe and deliver until cancelled; reconnects after a Redis outage."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if ready is not None:
                    ready.set()
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    items = orjson.loads(message["data"])
                    self.hub.deliver([Published(int(i["seq"]), str(i["owner_id"]), i["payload"]) for i in items])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("stream_listener_failed", exc_info=True)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def replay(db: Database, owner_id: uuid.UUID, after_seq: int) -> list[Published]:
    """The owner's events published after ``after_seq``, in order (at most ``REPLAY_LIMIT``)."""
    stmt = (
        select(OutboxEvent.seq, OutboxEvent.payload)
        .where(OutboxEvent.owner_id == owner_id, OutboxEvent.seq > after_seq)
        .order_by(OutboxEvent.seq)
        .limit(REPLAY_LIMIT)
    )
    # The primary, not a replica: a lagging replica could miss events whose live copy came earlier.
    async with db.unit_of_work() as session:
        rows = (await session.execute(stmt)).all()
    return [Published(int(seq), str(owner_id), payload) for seq, payload in rows]


def _frame(event: Published) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.seq,
        str(event.payload["type"]).encode(),
        orjson.dumps(event.payload),
    )


class _Ending(Exception):
    """The instance drains: the stream ends."""


async def _next_event(sub: Subscription, stopper: asyncio.Future[Any], wait: float) -> Published | None:
    """The next event of ``sub``; None after ``wait`` seconds without one. ``stopper`` is the
    stream's one wait on the drain's ``streams_end`` (made once per stream, not per event).

    Raises:
        _Ending: ``stopper`` finished (the instance drains).
    """
    if stopper.done():
        raise _Ending
    getter = asyncio.ensure_future(sub.queue.get())
    done, _ = await asyncio.wait({getter, stopper}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()  # an event that arrived with the drain still goes out
    getter.cancel()
    if stopper in done:
        raise _Ending
    return None


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


router = APIRouter(tags=["events"])


@router.get(
    "/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def event_stream(
    request: Request,
    principal: CurrentPrincipal,
    ctx: Ctx,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """The caller's task events as Server-Sent Events (``id`` = stream position, ``event`` = type,
    ``data`` = the event payload). Send ``Last-Event-ID`` to resume after a reconnect. The
    stream ends when the access token expires or is revoked; reconnect with a fresh token. While
    the instance drains (SIGTERM) the stream ends and a new one is refused with 503 and
    ``Retry-After: 1``: reconnect (a load balancer sends the retry to another instance)."""
    ending: asyncio.Event = request.app.state.drain.streams_end
    if ending.is_set():
        raise ServiceUnavailable(
            "This instance is shutting down; reconnect (with Last-Event-ID) to another one.",
            headers={"Retry-After": "1"},
        )
    hub: StreamHub = request.app.state.events.hub
    owner = principal.user.id
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    expires_at = float(principal.claims.exp)
    heartbeat = ctx.settings.sse_heartbeat
    after = _parse_last_event_id(last_event_id)

    async def body() -> AsyncIterator[bytes]:
        stopper = asyncio.ensure_future(ending.wait())  # one per stream, not one per event
        try:
            with hub.subscribe(str(owner)) as sub:
                yield b"retry: 1000\n\n"
                last = after if after is not None else -1
                if after is not None:
                    for event in await replay(ctx.db, owner, after):
                        yield _frame(event)
                        last = event.seq
                while not sub.overflowed:
                    remaining = expires_at - time.time()
                    if remaining <= 0:
                        return
                    try:
                        received = await _next_event(sub, stopper, min(heartbeat, remaining))
                    except _Ending:
                        return
                    if received is None:
                        if not await _still_valid(ctx, token):
                            return
                        yield b": heartbeat\n\n"
                        continue
                    if received.seq <= last:  # already sent by the replay
                        continue
                    last = received.seq
                    yield _frame(received)
        finally:
            stopper.cancel()

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


async def _still_valid(ctx: Any, token: str) -> bool:
    try:
        await auth_service.authenticate(ctx.db, ctx.tokens, token, cache=ctx.auth_cache)
    except DomainError:
        return False
    return True
