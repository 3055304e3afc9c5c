"""Rate limiting over the ``limits`` library (moving window), in-process or Redis storage.

Scopes and their defaults (SPEC "Operations", from the seed notes): ``anon`` 100 per 15 minutes
per client IP, ``auth`` 10 per minute per IP and per account on login/register/refresh, ``user``
1,000 per minute per user. Rejections carry ``Retry-After`` and the ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` headers (IETF draft-ietf-httpapi-ratelimit-headers).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog
from limits import RateLimitItem, WindowStats, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskhub.core.breaker import CircuitBreaker
from taskhub.core.errors import TooManyRequests, problem_response
from taskhub.core.metrics import metrics
from taskhub.core.network import IPNetwork, client_ip

log = structlog.get_logger("taskhub.ratelimit")


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """Outcome of one hit: allowed or not, the limit, what is left, and seconds until reset."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` headers, plus ``Retry-After`` when rejected (seconds)."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_after))
        return headers


class RateLimiter:
    """Named limits over one storage: in-process memory, or Redis shared by every instance.

    When the shared storage fails, counting continues in an in-process fallback (per instance)
    until it answers again: an outage loosens limits by the number of instances, never removes them.

    Args:
        limits_by_scope: scope name -> a ``limits`` string such as ``"10 per minute"``.
        storage_url: e.g. ``"async+redis://localhost:6379/0"``; None for in-process.
        enabled: False makes every hit allowed (benchmarks and some tests).
    """

    def __init__(
        self, limits_by_scope: dict[str, str], *, storage_url: str | None = None, enabled: bool = True
    ) -> None:
        self._items: dict[str, RateLimitItem] = {k: parse(v) for k, v in limits_by_scope.items()}
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self.shared = storage_url is not None
        if storage_url:
            storage = storage_from_string(
                storage_url, implementation="redispy", socket_timeout=0.5, socket_connect_timeout=0.5
            )
            if not isinstance(storage, Storage):
                raise ValueError(f"rate-limit storage {storage_url!r} is not an async (async+...) storage")
            self._limiter = MovingWindowRateLimiter(storage)
        else:
            self._limiter = self._fallback
        self.breaker = CircuitBreaker()
        self.enabled = enabled
        self._in_flight: dict[tuple[str, str], int] = {}

    async def _hit(
        self, limiter: MovingWindowRateLimiter, item: RateLimitItem, scope: str, key: str
    ) -> RateLimitResult:
        allowed = await limiter.hit(item, scope, key)
        stats = await limiter.get_window_stats(item, scope, key)
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        return RateLimitResult(allowed, item.amount, max(0, stats.remaining), reset_after)

    async def hit(self, scope: str, key: str) -> RateLimitResult:
        """Count one request for ``key`` under ``scope``; never raises for a rejection."""
        item = self._items[scope]
        if not self.enabled:
            return RateLimitResult(True, item.amount, item.amount, 0)
        result: RateLimitResult | None = None
        if self.shared and not self.breaker.is_open:
            try:
                result = await self._hit(self._limiter, item, scope, key)
            except Exception:  # storage errors differ by client library; any of them means "down"
                self.breaker.trip()
                log.warning("rate_limit_storage_down", exc_info=True)
        if result is None:
            result = await self._hit(self._fallback, item, scope, key)
        return result

    @asynccontextmanager
    async def failure_budget(self, scope: str, key: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        """Admit a request whose *failure* costs one unit of ``scope`` for ``key``.

        Requests still in flight count as spent, so a burst of concurrent attempts cannot all pass
        the check before the first failure is counted (per process; across instances the shared
        counter is exact once failures land). Yields ``charge``, to await when the attempt failed.

        Raises:
            TooManyRequests: no budget is left.
        """
        if not self.enabled:

            async def _noop() -> None:
                return None

            yield _noop
            return
        item = self._items[scope]
        stats = await self._window_stats(item, scope, key)
        in_flight = self._in_flight.get((scope, key), 0)
        if stats.remaining - in_flight <= 0:
            metrics().rate_limit_rejections.labels(scope).inc()
            reset_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise TooManyRequests(
                f"Rate limit exceeded; retry in {reset_after} s.",
                headers=RateLimitResult(False, item.amount, 0, reset_after).headers(),
            )
        self._in_flight[(scope, key)] = in_flight + 1

        async def charge() -> None:
            await self.hit(scope, key)

        try:
            yield charge
        finally:
            left = self._in_flight.get((scope, key), 1) - 1
            if left > 0:
                self._in_flight[(scope, key)] = left
            else:
                self._in_flight.pop((scope, key), None)

    async def _window_stats(self, item: RateLimitItem, scope: str, key: str) -> WindowStats:
        if self.shared and not self.breaker.is_open:
            try:
                return await self._limiter.get_window_stats(item, scope, key)
            except Exception:  # storage errors differ by client library; any of them means "down"
                self.breaker.trip()
        return await self._fallback.get_window_stats(item, scope, key)

    async def enforce(self, scope: str, key: str) -> RateLimitResult:
        """Like :meth:`hit`, but raises when rejected.

        Raises:
            TooManyRequests: the limit is exhausted; headers say when to retry.
        """
        result = await self.hit(scope, key)
        if not result.allowed:
            metrics().rate_limit_rejections.labels(scope).inc()
            raise TooManyRequests(
                f"Rate limit exceeded; retry in {max(1, result.reset_after)} s.", headers=result.headers()
            )
        return result


class RateLimitState(Protocol):
    """What :class:`RateLimitMiddleware` reads from the running app (``app.state.ctx``, built in
    the lifespan): the limiter, and a verifier that names the subject of a valid access token."""

    limiter: RateLimiter

    def token_subject(self, token: str) -> str | None:
        """The verified subject of ``token``, or None when it does not verify."""


class RateLimitMiddleware:
    """Apply the ``user``/``anon`` limits to requests under ``prefix`` (one path prefix or a tuple
    of them: the REST API and ``/graphql``; pure ASGI).

    A request with a valid Bearer token counts against its user (key = ``sub``); any other request
    against its client IP. Every limited response carries the ``RateLimit-*`` headers, unless the
    endpoint set stricter ones itself (the ``auth`` limits of the login routes). Preflight
    ``OPTIONS`` requests never reach this layer when CORS is on (it answers them outside).
    """

    def __init__(self, app: ASGIApp, *, trusted: Sequence[IPNetwork], prefix: str | tuple[str, ...] = "/api/") -> None:
        self.app = app
        self.trusted = trusted
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        state: RateLimitState = scope["app"].state.ctx
        limiter = state.limiter
        subject = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                raw = value.decode("latin-1")
                if raw[:7].lower() == "bearer ":
                    subject = state.token_subject(raw[7:].strip())
                break
        scope_name, key = ("user", subject) if subject else ("anon", client_ip(scope, self.trusted))
        result = await limiter.hit(scope_name, key)
        if not result.allowed:
            metrics().rate_limit_rejections.labels(scope_name).inc()
            request_id = scope.get("state", {}).get("request_id")
            response = problem_response(
                path,
                request_id,
                status=429,
                title="Too many requests",
                slug="rate-limited",
                detail=f"Rate limit exceeded; retry in {max(1, result.reset_after)} s.",
                headers=result.headers(),
            )
            await response(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in result.headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = {k for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *[(k, v) for k, v in extra if k not in existing]]
            await send(message)

        await self.app(scope, receive, send_with_headers)
