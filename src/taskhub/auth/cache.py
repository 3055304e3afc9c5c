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

Read-your-writes positions ride along (with read replicas; see :mod:`taskhub.db.replicas`): after a
write commits, the unit of work records the primary's WAL position for each user it concerns
(:meth:`AuthCache.record_positions`: the caller, the user whose authentication state changed),
and :meth:`AuthCache.lookup` returns it as ``read_floor``, which every read of that request
(authentication included) must have replayed. In Redis the floor is one more command in the
lookup's pipelined round trip, read *after* the generation: a reader that sees a generation bumped
by a change also sees the floor recorded before that bump, so neither a decision nor a cached list
page can be computed from a replica that has not replayed the change. The floor is unknown
(:data:`~taskhub.db.replicas.PRIMARY_ONLY`: read from the primary) while Redis is unreachable or
positions wait to be delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.core.breaker import CircuitBreaker
from taskhub.core.denylist import deny_key
from taskhub.db.replicas import ANY_POSITION, PRIMARY_ONLY
from taskhub.db.session import on_commit, read_your_writes
from taskhub.users.models import User

log = structlog.get_logger("taskhub.auth.cache")


@dataclass(frozen=True, slots=True)
class AuthLookup:
    """What the cache knows of one token: ``revoked`` (denied in the shared denylist), a cached
    ``user``, the ``stamp`` to store a fresh decision under (None: do not store one), and the
    ``read_floor`` (WAL position) the caller's reads must see (the primary's when unknown)."""

    revoked: bool = False
    user: User | None = None
    stamp: Any = None
    read_floor: int = PRIMARY_ONLY


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

    async def record_positions(self, user_ids: Collection[uuid.UUID], position: int) -> None:
        """Make ``position`` (a WAL LSN) the read floor of ``user_ids``, unless theirs is higher."""

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
    """Decisions, generations and read floors in this process (one process, no Redis).

    Args:
        ttl: seconds a decision lives. positions_ttl: seconds a read floor is kept (it only matters
            until every replica has replayed it). max_entries: bound on stored decisions.
    """

    def __init__(self, *, ttl: float = 30.0, max_entries: int = 50_000, positions_ttl: float = 86_400.0) -> None:
        self._local = _LocalDecisions(ttl, max_entries)
        self._generations: dict[uuid.UUID, int] = {}
        self._positions: OrderedDict[uuid.UUID, tuple[int, float]] = OrderedDict()
        self._positions_ttl = positions_ttl

    async def lookup(self, jti: str, user_id: uuid.UUID) -> AuthLookup:
        stamp = self._generations.get(user_id, 0)
        floor, expires = self._positions.get(user_id, (ANY_POSITION, 0.0))
        if expires < time.monotonic():
            floor = ANY_POSITION
        return AuthLookup(user=self._local.get(jti, user_id, stamp), stamp=stamp, read_floor=floor)

    def put(self, jti: str, user: User, stamp: Any) -> None:
        if stamp == self._generations.get(user.id, 0):  # else read before a change: never stored
            self._local.put(jti, user, stamp)

    async def invalidate(self, user_id: uuid.UUID) -> None:
        self._generations[user_id] = self._generations.get(user_id, 0) + 1

    async def record_positions(self, user_ids: Collection[uuid.UUID], position: int) -> None:
        now = time.monotonic()
        for user_id in user_ids:
            floor, expires = self._positions.pop(user_id, (ANY_POSITION, 0.0))
            self._positions[user_id] = (
                max(position, floor if expires >= now else ANY_POSITION),
                now + self._positions_ttl,
            )
        while self._positions and next(iter(self._positions.values()))[1] < now:
            self._positions.popitem(last=False)  # oldest first: entries are moved to the end on write

    async def aclose(self) -> None:
        return None


class RedisAuthCache(_CachedDecisions):
    """Decisions in this process; generations, read floors and the denylist in Redis (shared by
    every instance).

    Args:
        client: a ``redis.asyncio.Redis``. store_decisions: False keeps only the shared denylist
            check. track_positions: read and record read-your-writes floors (with read replicas).
            ttl: seconds a decision lives. retry_interval: seconds between retries of undelivered
            invalidations and floors.
    """

    GENERATION_TTL = 86_400  # s; an expired generation only costs a miss
    # s; a floor matters only until the replicas replayed it (seconds), but a list page is cached
    # under the floor its read used, so a floor must outlive any page read before it was recorded
    # (TASKHUB_CACHE_TTL): a day is far more than both.
    POSITION_TTL = 86_400

    # Raise the floor, never lower it (two writes of one user may record out of order). Floors are
    # 16 hex digits, so string order is numeric order (Lua numbers are doubles: 2**53 at most).
    _RAISE_FLOOR = """
local current = redis.call('GET', KEYS[1])
if (not current) or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

    def __init__(
        self,
        client: Redis,
        *,
        store_decisions: bool = True,
        track_positions: bool = False,
        ttl: float = 30.0,
        max_entries: int = 50_000,
        namespace: str = "taskhub",
        retry_interval: float = 0.5,
    ) -> None:
        self.client = client
        self.store_decisions = store_decisions
        self.track_positions = track_positions
        self.ns = namespace
        self.retry_interval = retry_interval
        self.breaker = CircuitBreaker()
        self._local = _LocalDecisions(ttl, max_entries)
        self._pending: set[uuid.UUID] = set()
        self._pending_positions: dict[uuid.UUID, int] = {}
        self._retry: asyncio.Task[None] | None = None

    def _gen_key(self, user_id: uuid.UUID) -> str:
        return f"{self.ns}:authgen:{user_id.hex}"

    def _position_key(self, user_id: uuid.UUID) -> str:
        return f"{self.ns}:ryw:{user_id.hex}"

    def _down(self) -> None:
        self.breaker.trip()
        self._local.entries.clear()  # decisions stamped before the outage are not trusted after it

    async def lookup(self, jti: str, user_id: uuid.UUID) -> AuthLookup:
        if self.breaker.is_open or self._pending or self._pending_positions:
            return AuthLookup()
        fresh = secrets.token_hex(8)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(deny_key(self.ns, jti))
            pipe.set(self._gen_key(user_id), fresh, nx=True, get=True, ex=self.GENERATION_TTL)
            if self.track_positions:
                pipe.get(self._position_key(user_id))  # after the generation: see the module docstring
            denied, current, *position = await pipe.execute()
        except RedisError:
            self._down()
            log.warning("auth_cache_unreachable", exc_info=True)
            return AuthLookup()
        if denied:
            return AuthLookup(revoked=True)
        floor = int(position[0], 16) if position and position[0] else ANY_POSITION
        stamp = current if current is not None else fresh.encode()
        if not self.store_decisions:
            return AuthLookup(read_floor=floor)
        return AuthLookup(user=self._local.get(jti, user_id, stamp), stamp=stamp, read_floor=floor)

    def put(self, jti: str, user: User, stamp: Any) -> None:
        if self.store_decisions and stamp is not None:
            self._local.put(jti, user, stamp)

    async def invalidate(self, user_id: uuid.UUID) -> None:
        try:
            await self.client.set(self._gen_key(user_id), secrets.token_hex(8), ex=self.GENERATION_TTL)
        except RedisError:
            self._down()
            self._pending.add(user_id)
            self._start_retry()

    async def record_positions(self, user_ids: Collection[uuid.UUID], position: int) -> None:
        if not self.track_positions:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for user_id in user_ids:
                self._queue_floor(pipe, user_id, position)
            await pipe.execute()
        except RedisError:
            self._down()
            for user_id in user_ids:
                self._pending_positions[user_id] = max(position, self._pending_positions.get(user_id, 0))
            self._start_retry()

    def _queue_floor(self, pipe: Any, user_id: uuid.UUID, position: int) -> None:
        # EVAL with the script's text, not EVALSHA: a pipeline with registered scripts asks
        # SCRIPT EXISTS first, one more round trip; Redis caches the compiled script either way.
        pipe.eval(self._RAISE_FLOOR, 1, self._position_key(user_id), f"{position:016x}", self.POSITION_TTL)

    def _start_retry(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._deliver_pending())

    async def _deliver_pending(self) -> None:
        while self._pending or self._pending_positions:
            await asyncio.sleep(self.retry_interval)
            pending, positions = set(self._pending), dict(self._pending_positions)
            try:
                pipe = self.client.pipeline(transaction=False)
                for user_id, position in positions.items():  # floors before generations, as after a commit
                    self._queue_floor(pipe, user_id, position)
                for user_id in pending:
                    pipe.set(self._gen_key(user_id), secrets.token_hex(8), ex=self.GENERATION_TTL)
                await pipe.execute()
            except RedisError:
                continue
            self._pending -= pending
            for user_id, position in positions.items():
                if self._pending_positions.get(user_id) == position:
                    del self._pending_positions[user_id]
            self.breaker.reset()
            log.info("auth_cache_invalidations_delivered")

    async def aclose(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry


class NullAuthCache:
    """No caching, no shared denylist, no read floors (several processes without Redis: the
    database decides, and every read goes to the primary)."""

    hits = 0
    misses = 0

    async def lookup(self, jti: str, user_id: uuid.UUID) -> AuthLookup:
        return AuthLookup()

    def put(self, jti: str, user: User, stamp: Any) -> None:
        return None

    async def invalidate(self, user_id: uuid.UUID) -> None:
        return None

    async def record_positions(self, user_ids: Collection[uuid.UUID], position: int) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _snapshot(user: User) -> User:
    """A transient copy of ``user``: belongs to no session, so a later rollback or close of the
    session that loaded it cannot expire it under other requests."""
    columns = sa_inspect(User).column_attrs
    return User(**{attr.key: getattr(user, attr.key) for attr in columns})


def invalidate_after_commit(session: AsyncSession, cache: AuthCache, user_id: uuid.UUID) -> None:
    """Forget cached decisions about ``user_id`` once ``session``'s unit of work commits, and make
    that user's next reads (their authentication first) see the change (read-your-writes).

    Called by every service that changes authentication state (see the module docstring).
    """

    async def _invalidate() -> None:
        await cache.invalidate(user_id)

    read_your_writes(session, user_id)
    on_commit(session, _invalidate)
