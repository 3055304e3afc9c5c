"""Response cache for per-user list pages, invalidated in O(1) by a per-user generation counter.

Keys: ``<namespace>:gen:<user>`` holds the generation; a page lives at
``<namespace>:<user>:<generation>:<query hash>``. A write bumps the generation, so every older page
becomes unreachable at once and expires by TTL (no ``KEYS``/``SCAN``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from taskhub.core.breaker import CircuitBreaker


class ResponseCache(Protocol):
    """What the task list needs from a cache; values are bytes, kept for the TTL given at construction."""

    hits: int
    misses: int

    async def generation(self, user: str) -> int | None:
        """Current generation of ``user`` (0 when never written), or None when the cache is down."""

    async def get(self, key: str) -> bytes | None:
        """The cached value, or None (also when the cache is down)."""

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` for the cache's TTL (best effort)."""

    async def invalidate(self, user: str) -> None:
        """Make every cached page of ``user`` unreachable."""

    async def ping(self) -> bool:
        """True when the cache answers."""


class MemoryCache:
    """In-process LRU cache with per-entry expiry; correct only within one process.

    Args:
        ttl: seconds a page lives (> 0). max_entries: bound on stored pages (least recently used
            dropped first).
    """

    def __init__(self, ttl: int, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    async def generation(self, user: str) -> int | None:
        return self._generations.get(user, 0)

    async def get(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            if entry is not None:
                del self._data[key]
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return entry[1]

    async def set(self, key: str, value: bytes) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def invalidate(self, user: str) -> None:
        self._generations[user] = self._generations.get(user, 0) + 1

    async def ping(self) -> bool:
        return True


class NullCache:
    """A cache that stores nothing (``TASKHUB_CACHE_TTL=0`` or several workers without Redis)."""

    hits = 0
    misses = 0

    async def generation(self, user: str) -> int | None:
        return None

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes) -> None:
        return None

    async def invalidate(self, user: str) -> None:
        return None

    async def ping(self) -> bool:
        return True


class RedisCache:
    """The response cache in Redis, shared by every instance.

    Failures never raise: reads miss, writes are skipped, and invalidations that could not be
    delivered are kept and replayed before this instance reads from Redis again (so a user who
    wrote during an outage does not get pre-outage pages afterwards from this instance).

    Args:
        client: a ``redis.asyncio.Redis``. ttl: seconds a page lives (> 0). namespace: key prefix.
    """

    def __init__(self, client: Redis, *, ttl: int, namespace: str = "taskhub") -> None:
        self.client = client
        self.ttl = ttl
        self.ns = namespace
        self.breaker = CircuitBreaker()
        self._pending: set[str] = set()
        self.hits = 0
        self.misses = 0

    def _gen_key(self, user: str) -> str:
        return f"{self.ns}:gen:{user}"

    async def _usable(self) -> bool:
        if self.breaker.is_open:
            return False
        if self._pending:
            try:
                pipe = self.client.pipeline(transaction=False)
                for user in self._pending:
                    pipe.incr(self._gen_key(user))
                await pipe.execute()
                self._pending.clear()
            except RedisError:
                self.breaker.trip()
                return False
        return True

    async def generation(self, user: str) -> int | None:
        if not await self._usable():
            return None
        try:
            value = await self.client.get(self._gen_key(user))
        except RedisError:
            self.breaker.trip()
            return None
        return int(value) if value is not None else 0

    async def get(self, key: str) -> bytes | None:
        if not await self._usable():
            self.misses += 1
            return None
        try:
            value = await self.client.get(f"{self.ns}:{key}")
        except RedisError:
            self.breaker.trip()
            value = None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value if isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes) -> None:
        if not await self._usable():
            return
        try:
            await self.client.set(f"{self.ns}:{key}", value, ex=self.ttl)
        except RedisError:
            self.breaker.trip()

    async def invalidate(self, user: str) -> None:
        if self.breaker.is_open:
            self._pending.add(user)
            return
        try:
            await self.client.incr(self._gen_key(user))
        except RedisError:
            self.breaker.trip()
            self._pending.add(user)

    async def ping(self) -> bool:
        try:
            ok = bool(await self.client.ping())
        except RedisError:
            self.breaker.trip()
            return False
        self.breaker.reset()
        return ok
