"""Rate limiting over the ``limits`` library (moving window), in-process or Redis storage.

Scopes and their defaults (SPEC "Operations", from the seed notes): ``anon`` 100 per 15 minutes
per client IP, ``auth`` 10 per minute per IP and per account on login/register/refresh, ``user``
1,000 per minute per user. Rejections carry ``Retry-After`` and the ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` headers (IETF draft-ietf-httpapi-ratelimit-headers).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, WindowStats, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskhub.core.cache import CircuitBreaker
from taskhub.core.errors import TooManyRequests, problem_response

log = structlog.get_logger("taskhub.ratelimit")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
            self.storage: Storage = storage
            self._limiter = MovingWindowRateLimiter(storage)
        else:
            self.storage = self._fallback.storage
            self._limiter = self._fallback
        self.breaker = CircuitBreaker()
        self.enabled = enabled
        self.rejections = 0
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
        if not result.allowed:
            self.rejections += 1
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
            reset_after = max(1, math.ceil(stats.reset_time - time.time()))
            self.rejections += 1
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
            raise TooManyRequests(
                f"Rate limit exceeded; retry in {max(1, result.reset_after)} s.", headers=result.headers()
            )
        return result


# Charged per IP before the request. ``/auth/refresh`` is charged per IP only when it fails
# (see ``auth.router.refresh``): a valid refresh token is a 256-bit secret, and a dashboard
# restores its session with one refresh per page load.
AUTH_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/token"})


def client_ip(scope: Scope, trusted: Sequence[IPNetwork]) -> str:
    """The client's IP: the direct peer, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy (MDN, "X-Forwarded-For", security).
    """
    peer = scope.get("client")
    peer_ip = peer[0] if peer else "unknown"
    if not trusted or not _is_trusted(peer_ip, trusted):
        return str(peer_ip)
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    for candidate in reversed(forwarded):
        if not _is_ip(candidate):
            break  # garbage in the chain: trust nothing to the left of it
        if not _is_trusted(candidate, trusted):
            return candidate
    return str(peer_ip)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_trusted(ip: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in trusted)


class RateLimitMiddleware:
    """Apply the ``user``/``anon`` limits to ``/api/`` requests, and ``auth`` per IP on auth paths.

    A request with a valid Bearer token counts against its user (key = ``sub``); any other request
    against its client IP. Every limited response carries the ``RateLimit-*`` headers.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        peek_subject: Callable[[str], str | None],
        trusted: Sequence[IPNetwork],
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.peek_subject = peek_subject
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or not self.limiter.enabled:
            await self.app(scope, receive, send)
            return
        ip = client_ip(scope, self.trusted)
        scope.setdefault("state", {})["client_ip"] = ip
        subject = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                raw = value.decode("latin-1")
                if raw[:7].lower() == "bearer ":
                    subject = self.peek_subject(raw[7:].strip())
                break
        checks = [("user", subject)] if subject else [("anon", ip)]
        if path in AUTH_PATHS and scope["method"] == "POST":
            checks.append(("auth", ip))
        result: RateLimitResult | None = None
        for scope_name, key in checks:
            current = await self.limiter.hit(scope_name, key)
            if not current.allowed:
                request_id = scope.get("state", {}).get("request_id")
                response = problem_response(
                    path,
                    request_id,
                    status=429,
                    title="Too many requests",
                    slug="rate-limited",
                    detail=f"Rate limit exceeded; retry in {max(1, current.reset_after)} s.",
                    headers=current.headers(),
                )
                await response(scope, receive, send)
                return
            if result is None or current.remaining < result.remaining:
                result = current
        assert result is not None
        extra = [(k.lower().encode(), v.encode()) for k, v in result.headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A stricter per-account result set by an endpoint wins (it is what runs out first).
                inner = scope.get("state", {}).get("ratelimit")
                headers = extra
                if isinstance(inner, RateLimitResult) and inner.remaining < result.remaining:
                    headers = [(k.lower().encode(), v.encode()) for k, v in inner.headers().items()]
                existing = {k for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *[(k, v) for k, v in headers if k not in existing],
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
