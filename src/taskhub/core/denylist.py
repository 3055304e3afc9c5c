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


def deny_key(namespace: str, jti: str) -> str:
    """The Redis key that marks ``jti`` as denied (read by ``auth.cache.RedisAuthCache``)."""
    return f"{namespace}:deny:{jti}"


class TokenDenylist(Protocol):
    """Fast-path store of revoked ``jti`` values."""

    async def add(self, jti: str, expires_at: float) -> None:
        """Deny ``jti`` until ``expires_at`` (Unix seconds). Best effort."""


class DatabaseOnlyDenylist:
    """Embedded mode: nothing beyond the database table."""

    async def add(self, jti: str, expires_at: float) -> None:
        return None


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
            await self.client.set(deny_key(self.ns, jti), b"1", ex=ttl)
        except RedisError:
            self.breaker.trip()
