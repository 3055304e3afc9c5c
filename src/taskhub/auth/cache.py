"""Caches of positive authentication decisions, invalidated per user by data changes.

Every authenticated request would otherwise load the caller's user row and check the denylist and
the session's family (the largest single item of a read's CPU in ``bench/RESULTS.md``). A verified
``jti -> user`` decision is kept in-process for up to ``ttl`` seconds, stamped with the user's
*generation* as read before the database was.

Correctness rests on two rules:
- every service that changes a user's authentication state (password, profile or email change,
  role or active change, deletion, logout, refresh-token reuse) calls
  :func:`invalidate_after_commit` for that user, which gives the user a new generation once the
  change commits; task writes never do;
- a reader takes the user's generation *before* it reads the database, so a decision computed from
  pre-change rows is stored under a superseded generation and never served.

Two stores of generations:
- :class:`MemoryAuthCache` (one process, no Redis): generations are in-process counters. Only correct
  when every change goes through this process; changes made by another process (the
  ``create-admin`` CLI) are seen after at most ``ttl`` seconds.
- :class:`RedisAuthCache` (production): generations live in Redis and are shared by every
  instance; one pipelined round trip per request reads the user's generation and the ``jti``'s
  denylist entry. A generation is a random value created on first read (``SET NX GET``), so a
  Redis restart that loses it makes every cached decision miss instead of matching again. While
  Redis is unreachable nothing is served from or stored in the cache (the database decides), and
  invalidations that could not be delivered are retried every ``retry_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.core.breaker import CircuitBreaker
from taskhub.core.denylist import deny_key
from taskhub.db.session import on_commit
from taskhub.users.models import User

log = structlog.get_logger("taskhub.auth.cache")


@dataclass(frozen=True, slots=True)
class AuthLookup:
    """What the cache knows of one token: ``revoked`` (denied in the shared denylist), a cached
    ``user``, and the ``stamp`` to store a fresh decision under (None: do not store one)."""

    revoked: bool = False
    user: User | None = None
    stamp: Any = None


class AuthCache(Protocol):
    """What ``auth.service.authenticate`` and the services that change auth state need."""

    @property
    def hits(self) -> int:
        """Lookups served from the cache."""

    @property
    def misses(self) -> int:
        """Lookups that had to read the database."""

    async def lookup(self, jti: str, user_id: uuid.UUID) -> AuthLookup:
        """The cached decision for access token ``jti`` of ``user_id``; call before reading the database."""

    def put(self, jti: str, user: User, stamp: Any) -> None:
        """Remember a positive decision made from data read after :meth:`lookup` gave ``stamp``."""

    async def invalidate(self, user_id: uuid.UUID) -> None:
        """Forget every decision about ``user_id`` (after a change to their authentication state)."""

    async def aclose(self) -> None:
        """Stop background work."""


class _LocalDecisions:
    """LRU of ``jti -> (user snapshot, stamp, expiry)``; ``ttl`` in seconds."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.entries: OrderedDict[str, tuple[User, Any, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, jti: str, user_id: uuid.UUID, stamp: Any) -> User | None:
        entry = self.entries.get(jti)
        if entry is None or entry[0].id != user_id or entry[1] != stamp or entry[2] < time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def put(self, jti: str, user: User, stamp: Any) -> None:
        self.entries[jti] = (_snapshot(user), stamp, time.monotonic() + self.ttl)
        self.entries.move_to_end(jti)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


class _CachedDecisions:
    """Hit and miss counts of the in-process decisions (``_local``)."""

    _local: _LocalDecisions

    @property
    def hits(self) -> int:
        """Lookups served from the cache."""
        return self._local.hits

    @property
    def misses(self) -> int:
        """Lookups that had to read the database."""
        return self._local.misses


class MemoryAuthCache(_CachedDecisions):
    """Decisions and generations in this process (embedded mode, one process)."""

    def __init__(self, *, ttl: float = 30.0, max_entries: int = 50_000) -> None:
        self._local = _LocalDecisions(ttl, max_entries)
        self._generations: dict[uuid.UUID, int] = {}

    async def lookup(self, jti: str, user_id: uuid.UUID) -> AuthLookup:
        stamp = self._generations.get(user_id, 0)
        return AuthLookup(user=self._local.get(jti, user_id, stamp), stamp=stamp)

    def put(self, jti: str, user: User, stamp: Any) -> None:
        if stamp == self._generations.get(user.id, 0):  # else read before a change: never stored
            self._local.put(jti, user, stamp)

    async def invalidate(self, user_id: uuid.UUID) -> None:
        self._generations[user_id] = self._generations.get(user_id, 0) + 1

    async def aclose(self) -> None:
        return None


class RedisAuthCache(_CachedDecisions):
    """Decisions in this process, generations and the denylist in Redis (shared by every instance).

    Args:
        client: a ``redis.asyncio.Redis``. store_decisions: False keeps only the shared denylist
            check (with read replicas, whose lag could re-cache a revoked decision). ttl: seconds a
            decision lives. retry_interval: seconds between retries of undelivered invalidations.
    """

    GENERATION_TTL = 86_400  # s; an expired generation only costs a miss

    def __init__(
        self,
        client: Redis,
        *,
        store_decisions: bool = True,
        ttl: float = 30.0,
        max_entries: int = 50_000,
        namespace: str = "taskhub",
        retry_interval: float = 0.5,
    ) -> None:
        self.client = client
        self.store_decisions = store_decisions
        self.ns = namespace
        self.retry_interval = retry_interval
        self.breaker = CircuitBreaker()
        self._local = _LocalDecisions(ttl, max_entries)
        self._pending: set[uuid.UUID] = set()
        self._retry: asyncio.Task[None] | None = None

    def _gen_key(self, user_id: uuid.UUID) -> str:
        return f"{self.ns}:authgen:{user_id.hex}"

    def _down(self) -> None:
        self.breaker.trip()
        self._local.entries.clear()  # decisions stamped before the outage are not trusted after it

    async def lookup(self, jti: str, user_id: uuid.UUID) -> AuthLookup:
        if self.breaker.is_open or self._pending:
            return AuthLookup()
        fresh = secrets.token_hex(8)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(deny_key(self.ns, jti))
            pipe.set(self._gen_key(user_id), fresh, nx=True, get=True, ex=self.GENERATION_TTL)
            denied, current = await pipe.execute()
        except RedisError:
            self._down()
            log.warning("auth_cache_unreachable", exc_info=True)
            return AuthLookup()
        if denied:
            return AuthLookup(revoked=True)
        stamp = current if current is not None else fresh.encode()
        if not self.store_decisions:
            return AuthLookup()
        return AuthLookup(user=self._local.get(jti, user_id, stamp), stamp=stamp)

    def put(self, jti: str, user: User, stamp: Any) -> None:
        if self.store_decisions and stamp is not None:
            self._local.put(jti, user, stamp)

    async def invalidate(self, user_id: uuid.UUID) -> None:
        try:
            await self.client.set(self._gen_key(user_id), secrets.token_hex(8), ex=self.GENERATION_TTL)
        except RedisError:
            self._down()
            self._pending.add(user_id)
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._deliver_pending())

    async def _deliver_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(self.retry_interval)
            try:
                pipe = self.client.pipeline(transaction=False)
                for user_id in self._pending:
                    pipe.set(self._gen_key(user_id), secrets.token_hex(8), ex=self.GENERATION_TTL)
                await pipe.execute()
            except RedisError:
                continue
            self._pending.clear()
            self.breaker.reset()
            log.info("auth_cache_invalidations_delivered")

    async def aclose(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry


class NullAuthCache:
    """No caching and no shared denylist (several processes without Redis: the database decides)."""

    hits = 0
    misses = 0

    async def lookup(self, jti: str, user_id: uuid.UUID) -> AuthLookup:
        return AuthLookup()

    def put(self, jti: str, user: User, stamp: Any) -> None:
        return None

    async def invalidate(self, user_id: uuid.UUID) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _snapshot(user: User) -> User:
    """A transient copy of ``user``: belongs to no session, so a later rollback or close of the
    session that loaded it cannot expire it under other requests."""
    columns = sa_inspect(User).column_attrs
    return User(**{attr.key: getattr(user, attr.key) for attr in columns})


def invalidate_after_commit(session: AsyncSession, cache: AuthCache, user_id: uuid.UUID) -> None:
    """Forget cached decisions about ``user_id`` once ``session``'s unit of work commits.

    Called by every service that changes authentication state (see the module docstring).
    """

    async def _invalidate() -> None:
        await cache.invalidate(user_id)

    on_commit(session, _invalidate)
