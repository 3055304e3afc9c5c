"""Response cache for per-user list pages, invalidated in O(1) by a per-user generation counter.

Keys: ``<namespace>:gen:<user>`` holds the generation; a page lives at
``<namespace>:<user>:<generation>:<query hash>``. A write bumps the generation, so every older page
becomes unreachable at once and expires by TTL (no ``KEYS``/``SCAN``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol


class ResponseCache(Protocol):
    """What the task list needs from a cache; ``ttl`` in seconds, values are bytes."""

    hits: int
    misses: int

    async def generation(self, user: str) -> int | None:
        """Current generation of ``user`` (0 when never written), or None when the cache is down."""

    async def get(self, key: str) -> bytes | None:
        """The cached value, or None (also when the cache is down)."""

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        """Store ``value`` for ``ttl`` seconds (best effort)."""

    async def invalidate(self, user: str) -> None:
        """Make every cached page of ``user`` unreachable."""

    async def ping(self) -> bool:
        """True when the cache answers."""


class MemoryCache:
    """In-process LRU cache with per-entry expiry; correct only within one process.

    Args:
        max_entries: bound on stored pages (least recently used dropped first).
    """

    def __init__(self, max_entries: int = 10_000) -> None:
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

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        if ttl <= 0:
            return
        self._data[key] = (time.monotonic() + ttl, value)
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

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        return None

    async def invalidate(self, user: str) -> None:
        return None

    async def ping(self) -> bool:
        return True
