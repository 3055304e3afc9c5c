"""The access-token denylist (logout revokes a ``jti`` until the token expires).

The database table ``revoked_access_tokens`` is the durable record and is always consulted (it
rides on the query that loads the caller's user row). A shared store (Redis) holds the same
entries with a TTL equal to the token's remaining life, so every instance can refuse a revoked
token without the database; a Redis outage only removes that fast path.
"""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from taskhub.core.breaker import CircuitBreaker


class TokenDenylist(Protocol):
    """Fast-path store of revoked ``jti`` values."""

    async def add(self, jti: str, expires_at: float) -> None:
        """Deny ``jti`` until ``expires_at`` (Unix seconds). Best effort."""

    async def contains(self, jti: str) -> bool:
        """True when ``jti`` is known to be denied; False means "ask the database"."""


class DatabaseOnlyDenylist:
    """Embedded mode: nothing beyond the database table."""

    async def add(self, jti: str, expires_at: float) -> None:
        return None

    async def contains(self, jti: str) -> bool:
        return False


class RedisDenylist:
    """``<namespace>:deny:<jti>`` keys with a TTL of the token's remaining life (seconds)."""

    def __init__(self, client: Redis, *, namespace: str = "taskhub") -> None:
        self.client = client
        self.ns = namespace
        self.breaker = CircuitBreaker()

    async def add(self, jti: str, expires_at: float) -> None:
        ttl = int(expires_at - time.time()) + 1
        if ttl <= 0 or self.breaker.is_open:
            return
        try:
            await self.client.set(f"{self.ns}:deny:{jti}", b"1", ex=ttl)
        except RedisError:
            self.breaker.trip()

    async def contains(self, jti: str) -> bool:
        if self.breaker.is_open:
            return False
        try:
            return bool(await self.client.exists(f"{self.ns}:deny:{jti}"))
        except RedisError:
            self.breaker.trip()
            return False
