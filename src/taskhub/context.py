"""The typed application state, built once in the app's lifespan, and the dependencies that read it.

``AppContext`` holds what outlives a request: settings, engines, clients, codecs, caches. The
lifespan of :func:`taskhub.app.create_app` builds it with :func:`build_context` and stores it on
``app.state.ctx``; nothing is built at import or in ``create_app`` itself, so ``taskhub openapi``
has no side effects. Endpoints take what they need by name: ``Ctx``, ``ReadSession``,
``WriteSession``, ``ClientAddress``.

Read-your-writes: authentication records the :class:`Caller` (user id and read floor) on the
connection's state. ``ReadSession`` reads at that floor (a replica that has replayed the caller's
last write, else the primary; the primary when nobody authenticated first), and ``WriteSession``
names the caller for the position its commit records (:func:`taskhub.db.session.read_your_writes`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from taskhub.auth.cache import AuthCache, MemoryAuthCache, NullAuthCache, RedisAuthCache
from taskhub.config import Settings
from taskhub.core.cache import MemoryCache, NullCache, RedisCache, ResponseCache
from taskhub.core.denylist import DatabaseOnlyDenylist, RedisDenylist, TokenDenylist
from taskhub.core.network import client_ip
from taskhub.core.ratelimit import RateLimiter
from taskhub.core.security import PasswordHasher, TokenCodec
from taskhub.db.replicas import PRIMARY_ONLY
from taskhub.db.session import Database, read_your_writes


@dataclass
class AppContext:
    """Everything a request may need that outlives it: settings, engines, clients, codecs."""

    settings: Settings
    db: Database
    hasher: PasswordHasher
    tokens: TokenCodec
    limiter: RateLimiter
    cache: ResponseCache
    denylist: TokenDenylist
    auth_cache: AuthCache
    redis: Redis | None = None
    started_at: float = field(default_factory=time.monotonic)

    def token_subject(self, token: str) -> str | None:
        """The verified subject of an access token, or None (keys the rate limits by user)."""
        return self.tokens.verified_subject(token)

    async def aclose(self) -> None:
        """Close pooled connections and clients."""
        await self.auth_cache.aclose()
        await self.db.dispose()
        if self.redis is not None:
            await self.redis.aclose()


def build_context(settings: Settings) -> AppContext:
    """Make the shared state for ``settings``. Engines and clients connect lazily.

    Side effects, which is why only the lifespan and the CLI call it: the SQLite data directory
    is created, and in development a JWT secret is generated into it when none is configured.

    Raises:
        ConfigurationError: production mode without ``TASKHUB_JWT_SECRET``.
    """
    redis: Redis | None = None
    cache: ResponseCache
    denylist: TokenDenylist
    if settings.redis_url:
        # Production mode: cache, denylist and rate-limit counters shared by every instance.
        redis = Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        cache = RedisCache(redis, ttl=settings.cache_ttl) if settings.cache_ttl > 0 else NullCache()
        denylist = RedisDenylist(redis)
        limiter_storage: str | None = "async+" + settings.redis_url
    else:
        # An in-process cache cannot be invalidated across processes: with several workers
        # and no shared cache, caching is off rather than stale.
        cache = NullCache() if settings.cache_ttl <= 0 or settings.workers > 1 else MemoryCache(settings.cache_ttl)
        denylist = DatabaseOnlyDenylist()
        limiter_storage = None
    db = Database(settings)
    auth_cache = _auth_cache(settings, redis)
    db.positions = auth_cache  # writes record their WAL position where reads look for it
    return AppContext(
        settings=settings,
        tokens=TokenCodec(
            secret=settings.resolve_jwt_secret(),
            algorithm=settings.jwt_algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
        ),
        db=db,
        hasher=PasswordHasher.from_settings(settings),
        limiter=RateLimiter(
            {
                "anon": settings.rate_limit_anon,
                "auth": settings.rate_limit_auth,
                "user": settings.rate_limit_user,
            },
            storage_url=limiter_storage,
            enabled=settings.rate_limit_enabled,
        ),
        cache=cache,
        denylist=denylist,
        auth_cache=auth_cache,
        redis=redis,
    )


def _auth_cache(settings: Settings, redis: Redis | None) -> AuthCache:
    # Decisions are not stored in Redis mode with read replicas (every request's authentication
    # read goes to a replica at the caller's floor instead). Without Redis, generations and read
    # floors are per process: correct with one process only; several processes without Redis get
    # no cache and read from the primary (a floor recorded elsewhere would be unknown here).
    replicas = bool(settings.database_replica_urls)
    if redis is not None:
        return RedisAuthCache(redis, store_decisions=not replicas, track_positions=replicas)
    if settings.workers == 1:
        return MemoryAuthCache()
    return NullAuthCache()


def get_context(conn: HTTPConnection) -> AppContext:
    """The :class:`AppContext` of the running app (set by ``create_app``'s lifespan)."""
    ctx: AppContext = conn.app.state.ctx
    return ctx


async def context_dependency(conn: HTTPConnection) -> AppContext:
    """:func:`get_context` as an ``async`` dependency (a plain ``def`` one would cost a thread-pool hop)."""
    return get_context(conn)


Ctx = Annotated[AppContext, Depends(context_dependency)]


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of a request: ``user_id`` and the ``read_floor`` (WAL position)
    their reads must have replayed."""

    user_id: uuid.UUID
    read_floor: int


_CALLER = "taskhub_caller"


def set_caller(conn: HTTPConnection, caller: Caller) -> None:
    """Record the authenticated caller on the request (done by the auth dependencies)."""
    conn.scope.setdefault("state", {})[_CALLER] = caller


def get_caller(conn: HTTPConnection) -> Caller | None:
    """The caller recorded by authentication, or None (anonymous, or not authenticated yet)."""
    caller = conn.scope.get("state", {}).get(_CALLER)
    return caller if isinstance(caller, Caller) else None


def read_floor(conn: HTTPConnection) -> int:
    """The WAL position this request's reads must see: the caller's floor, or
    :data:`~taskhub.db.replicas.PRIMARY_ONLY` (read from the primary) when nobody authenticated."""
    caller = get_caller(conn)
    return caller.read_floor if caller is not None else PRIMARY_ONLY


@asynccontextmanager
async def read_unit(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """A read-only unit of work at the caller's floor: a replica that has replayed the caller's
    last write, else the primary (the primary before anyone authenticated)."""
    async with get_context(conn).db.unit_of_work(readonly=True, floor=read_floor(conn)) as session:
        yield session


@asynccontextmanager
async def write_unit(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """A unit of work on the primary that commits when the block ends and rolls back when it
    raises (see :meth:`Database.unit_of_work`); the authenticated caller reads their own write
    from then on (read-your-writes). One per REST write request, one per GraphQL mutation field."""
    async with get_context(conn).db.unit_of_work() as session:
        try:
            yield session
        finally:
            caller = get_caller(conn)
            if caller is not None:
                read_your_writes(session, caller.user_id)


async def read_session(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """:func:`read_unit` as a dependency. Declare it after ``CurrentUser`` (dependencies run in
    order); before authentication it reads from the primary."""
    async with read_unit(conn) as session:
        yield session


async def write_session(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """:func:`write_unit` as a dependency. It commits when the endpoint returns and *before* the
    response is sent (``scope="function"``), so a client never gets a 2xx for a write that did not
    commit; it rolls back when the endpoint raises."""
    async with write_unit(conn) as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(read_session, scope="function")]
WriteSession = Annotated[AsyncSession, Depends(write_session, scope="function")]


async def client_address(conn: HTTPConnection) -> str:
    """The client's IP, from ``X-Forwarded-For`` only behind ``TASKHUB_TRUSTED_PROXIES``."""
    return client_ip(conn.scope, get_context(conn).settings.trusted_networks)


ClientAddress = Annotated[str, Depends(client_address)]
