"""What a ``serve`` process runs for events, started and stopped by the app's lifespan.

- the stream hub (always) and, with Redis, the listener that feeds it from other instances;
- the outbox relay (``TASKHUB_RELAY_ENABLED``, default on): leader-elected, so any number of
  ``serve`` processes may run it; in embedded mode (no ``TASKHUB_BROKER_URL``) it applies events
  to the consumers in-process, and this process also runs the reminder scheduler and the email
  sender (``taskhub worker`` does that in broker mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from sqlalchemy import event

from taskhub.context import AppContext
from taskhub.events.relay import Fanout, Relay, backlog, make_sink
from taskhub.events.stream import RedisFanout, StreamHub

log = structlog.get_logger("taskhub.events")

STOP_TIMEOUT = 10.0  # seconds the shutdown waits for the background tasks to end


def stream_channel(prefix: str) -> str:
    """The Redis pub/sub channel of the live streams (one per deployment: the queue prefix)."""
    return f"{prefix}:stream"


class EventsRuntime:
    """The hub, the fan-out, the relay and (embedded mode) the worker loops of one process."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.hub = StreamHub()
        self.redis_fanout: RedisFanout | None = None
        fanout: Fanout = self.hub.publish
        if ctx.redis is not None:
            self.redis_fanout = RedisFanout(ctx.redis, stream_channel(ctx.settings.broker_queue_prefix), self.hub)
            fanout = self.redis_fanout.publish
        self.relay: Relay | None = None
        if ctx.settings.relay_enabled:
            self.relay = Relay(ctx.db, ctx.settings, make_sink(ctx.db, ctx.settings), fanout=fanout)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._broker_probe: tuple[float, bool, str | None] = (0.0, False, None)

    def _wake_relay(self, *_: Any) -> None:
        if self.relay is not None:
            self.relay.wake()

    async def start(self) -> None:
        """Start the background tasks (returns once the stream listener is subscribed)."""
        if self.redis_fanout is not None:
            ready = asyncio.Event()
            self._tasks.append(asyncio.create_task(self.redis_fanout.listen(ready)))
            with contextlib.suppress(TimeoutError):  # Redis down: the listener keeps trying
                await asyncio.wait_for(ready.wait(), timeout=2)
        if self.relay is not None:
            # A commit here may have written events: start a pass now instead of at the next poll.
            event.listen(self.ctx.db.primary.sync_engine, "commit", self._wake_relay)
            self._tasks.append(asyncio.create_task(self.relay.run()))
            if not self.ctx.settings.broker_url:
                from taskhub.worker.loops import run_email_sender, run_scheduler

                self._tasks.append(asyncio.create_task(run_scheduler(self.ctx.db, self.ctx.settings, self._stop)))
                self._tasks.append(asyncio.create_task(run_email_sender(self.ctx.db, self.ctx.settings, self._stop)))

    async def stop(self) -> None:
        """Stop the background tasks gracefully (each finishes the pass in progress: nothing is
        left half-done in the database), cancel what is still running after ``STOP_TIMEOUT``,
        and close the relay's sink."""
        self._stop.set()
        if self.relay is not None:
            self.relay.stop()
        if self.redis_fanout is not None:
            for task in self._tasks[:1]:
                task.cancel()  # the listener only waits on Redis
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        self._tasks.clear()
        if self.relay is not None:
            with contextlib.suppress(Exception):
                event.remove(self.ctx.db.primary.sync_engine, "commit", self._wake_relay)
            await self.relay.sink.close()

    async def readiness(self) -> dict[str, Any]:
        """``/ready``'s ``broker`` check: the mode, whether the broker answers, the outbox backlog
        (unsent events and the oldest one's age) and whether this process leads the relay. It is
        informational: a broker outage does not make the instance unready (writes keep working)."""
        settings = self.ctx.settings
        check: dict[str, Any] = {"backend": "rabbitmq" if settings.broker_url else "in-process"}
        if settings.broker_url:
            start = time.perf_counter()
            check["ok"], error = await self._probe_broker()
            # A round trip on the relay's connection, or (none, or it failed) a fresh connection;
            # a failed probe is remembered for 5 s, so then this is the time to say so.
            check["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
            if error:
                check["error"] = error
        else:
            check["ok"] = True
        try:
            async with self.ctx.db.unit_of_work(readonly=True) as session:
                check["outbox"] = await backlog(session)
        except Exception as exc:
            check["outbox"] = {"error": type(exc).__name__}
        if self.relay is not None:
            check["relay_leader"] = self.relay.status.leader
            if not self.relay.status.leader and self.relay.status.last_error:
                check["relay_error"] = self.relay.status.last_error  # e.g. a missing setting
        return check

    async def _probe_broker(self) -> tuple[bool, str | None]:
        from taskhub.events.broker import connect
        from taskhub.events.relay import BrokerSink

        if self.relay is not None and isinstance(self.relay.sink, BrokerSink) and self.relay.sink.publisher.connected:
            try:
                await self.relay.sink.publisher.ping()  # a round trip on the relay's own connection
                return True, None
            except Exception:  # fall back to a connection of its own (at most one per 5 s)
                log.info("broker_ping_failed", exc_info=True)
        checked_at, ok, error = self._broker_probe
        if time.monotonic() - checked_at < 5:  # at most one connection attempt per 5 s
            return ok, error
        assert self.ctx.settings.broker_url
        try:
            connection = await asyncio.wait_for(connect(self.ctx.settings.broker_url), timeout=2)
            await connection.close()
            ok, error = True, None
        except Exception as exc:
            ok, error = False, type(exc).__name__
        self._broker_probe = (time.monotonic(), ok, error)
        return ok, error
