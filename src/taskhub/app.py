"""``create_app(settings)``: builds the context (engines, codecs, adapters), middleware and handlers.

No I/O happens at import. The mode is chosen here, once, by picking adapters: the cache
(in-process or none), the rate-limit storage, the database engines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from taskhub import __version__
from taskhub.api import api_router, root_router
from taskhub.auth.cache import MemoryAuthCache, NullAuthCache
from taskhub.config import Settings
from taskhub.context import AppContext
from taskhub.core.cache import MemoryCache, NullCache, RedisCache, ResponseCache
from taskhub.core.denylist import DatabaseOnlyDenylist, RedisDenylist, TokenDenylist
from taskhub.core.errors import install_error_handlers
from taskhub.core.middleware import BodyGuardMiddleware
from taskhub.core.observability import RequestIdMiddleware, configure_logging
from taskhub.core.ratelimit import RateLimiter, RateLimitMiddleware
from taskhub.core.security import PasswordHasher, TokenCodec
from taskhub.db import migrate
from taskhub.db.session import Database
from taskhub.ops.housekeeping import run_periodically

DESCRIPTION = """
Multi-user task management: JWT access tokens with rotating refresh tokens, user and admin roles,
tasks with status, priority, due dates and tags, filters, search, offset and keyset paging,
ETags, idempotent creation. Errors are RFC 9457 problem details.

Use **Authorize** with your email as *username* to call the endpoints from this page.
"""


def build_context(settings: Settings) -> AppContext:
    """Make the shared state for ``settings`` (no network I/O; engines connect lazily)."""
    redis: Redis | None = None
    cache: ResponseCache
    denylist: TokenDenylist
    if settings.redis_url:
        # Production mode: cache, denylist and rate-limit counters shared by every instance.
        redis = Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        cache = RedisCache(redis) if settings.cache_ttl > 0 else NullCache()
        denylist = RedisDenylist(redis)
        limiter_storage: str | None = "async+" + settings.redis_url
    else:
        # An in-process cache cannot be invalidated across processes: with several workers
        # and no shared cache, caching is off rather than stale.
        cache = NullCache() if settings.cache_ttl <= 0 or settings.workers > 1 else MemoryCache()
        denylist = DatabaseOnlyDenylist()
        limiter_storage = None
    return AppContext(
        settings=settings,
        db=Database(settings),
        hasher=PasswordHasher(
            memory_cost=settings.argon2_memory_cost,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        ),
        tokens=TokenCodec(
            secret=settings.resolve_jwt_secret(),
            algorithm=settings.jwt_algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
        ),
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
        # Positive auth decisions may be cached only where every write passes through this process.
        # (and only without read replicas: a lagging replica could re-cache a revoked decision).
        auth_cache=(
            MemoryAuthCache()
            if redis is None and settings.workers == 1 and not settings.database_replica_urls
            else NullAuthCache()
        ),
        redis=redis,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application.

    Args:
        settings: defaults to ``Settings()`` (environment and ``.env``).

    ``settings.auto_migrate`` runs Alembic migrations at start-up; unset means True on SQLite
    (embedded mode) and False on PostgreSQL (run ``taskhub migrate`` once per deploy).
    ``settings.workers`` above 1 turns the in-process cache off (it cannot be shared).

    Raises:
        ConfigurationError: production mode without ``TASKHUB_JWT_SECRET``.
    """
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    ctx = build_context(settings)
    migrate_on_start = settings.is_sqlite if settings.auto_migrate is None else settings.auto_migrate

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start:
            await migrate.upgrade(ctx.db.primary)
        purger = asyncio.create_task(run_periodically(ctx.db, settings)) if settings.purge_interval > 0 else None
        try:
            yield
        finally:
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            await ctx.db.dispose()
            if ctx.redis is not None:
                await ctx.redis.aclose()

    app = FastAPI(
        title="Taskhub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # served by ops.docs from vendored Swagger UI files (works offline)
        redoc_url=None,
        redirect_slashes=False,  # a redirect would name http:// behind a TLS proxy; 404 is clearer
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(root_router)

    # Added innermost first: the request id wraps everything, so even a 413 or 429 carries it.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "ETag",
                "Location",
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
        )
    # The body guard sits inside the rate limiter: oversized or non-JSON bodies are counted
    # and their 413/415 answers carry the RateLimit-* headers like every other API response.
    app.add_middleware(BodyGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=ctx.limiter,
            peek_subject=ctx.tokens.peek_subject,
            trusted=settings.trusted_networks,
        )
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(RequestIdMiddleware, access_log_enabled=settings.access_log)
    return app
