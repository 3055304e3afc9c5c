"""Graceful drain on SIGTERM: stop being ready, finish what is in flight, then stop.

uvicorn's own SIGTERM handling closes the listening socket at once and then waits for in-flight
requests; a load balancer that still routes to the instance meanwhile gets refused connections,
and ``/ready`` cannot even be asked. Under ``taskhub serve`` the first SIGTERM therefore only
starts a drain: ``/ready`` answers 503 (``"status": "draining"``) while the instance goes on
serving every request, for at least ``TASKHUB_DRAIN_SECONDS`` (time for load balancers and
Kubernetes endpoints to take it out) and until no request is in flight, at most
``TASKHUB_DRAIN_SECONDS`` + :data:`DRAIN_TIMEOUT`; then uvicorn's graceful shutdown runs as
before. A second SIGTERM, or SIGINT, stops at once (uvicorn's usual handling).

Live streams (``GET /events/stream``) would hold a drain for its whole timeout: once
``TASKHUB_DRAIN_SECONDS`` have passed (the load balancer no longer sends new streams here),
:attr:`Drain.streams_end` is set, every open stream ends after what it already sent, and a new
one is refused with 503, so clients reconnect to another instance with ``Last-Event-ID`` and
miss nothing (the outbox replays what they did not see).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from types import FrameType
from typing import Any

import structlog

from taskhub.core.observability import InFlight

log = structlog.get_logger("taskhub.drain")

#: Seconds a drain waits for in-flight requests beyond ``TASKHUB_DRAIN_SECONDS``; uvicorn's
#: graceful shutdown then waits for what is left.
DRAIN_TIMEOUT = 30.0
_POLL = 0.05  # seconds between looks at the in-flight count


class Drain:
    """The drain state of one process; ``draining`` is what ``/ready`` reads.

    Args:
        in_flight: the request counter of :class:`~taskhub.core.observability.RequestIdMiddleware`.
        min_seconds: how long the drain lasts at least (``TASKHUB_DRAIN_SECONDS``).
    """

    def __init__(self, in_flight: InFlight, *, min_seconds: float = 0.0) -> None:
        self.in_flight = in_flight
        self.min_seconds = min_seconds
        self.draining = False
        #: Set when live streams must end (``TASKHUB_DRAIN_SECONDS`` into a drain).
        self.streams_end = asyncio.Event()
        self._previous: Any = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> bool:
        """Take over SIGTERM when uvicorn handles it (``taskhub serve``); otherwise (tests, an
        embedding program) leave signals alone. Call from the app's lifespan. Returns whether
        the handler was installed."""
        from uvicorn.server import Server

        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous) or not isinstance(getattr(previous, "__self__", None), Server):
            return False
        self._previous = previous
        loop = asyncio.get_running_loop()

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            if self.draining:  # the second SIGTERM: stop now
                previous(sig, frame)
                return
            self.draining = True
            loop.call_soon_threadsafe(self._begin, sig, frame)

        signal.signal(signal.SIGTERM, on_sigterm)
        return True

    def _begin(self, sig: int, frame: FrameType | None) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain_then_stop(sig, frame))

    async def _drain_then_stop(self, sig: int, frame: FrameType | None) -> None:
        started = time.monotonic()
        log.info("draining", in_flight=self.in_flight.count, min_seconds=self.min_seconds)
        deadline = started + self.min_seconds + DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            if time.monotonic() - started >= self.min_seconds:
                if not self.streams_end.is_set():
                    log.info("ending_streams", in_flight=self.in_flight.count)
                    self.streams_end.set()
                if self.in_flight.count == 0:
                    break
            await asyncio.sleep(_POLL)
        log.info("drained", in_flight=self.in_flight.count, seconds=round(time.monotonic() - started, 3))
        self._previous(sig, frame)  # uvicorn's handler: close the socket, finish, shut down

    def uninstall(self) -> None:
        """Give SIGTERM back to uvicorn (at shutdown)."""
        if self._previous is not None:
            with contextlib.suppress(ValueError):  # not the main thread: nothing was installed
                signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
