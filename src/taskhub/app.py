"""``create_app(settings)``: the ASGI application, its middleware, error handlers and lifespan.

Nothing happens at import or in ``create_app`` beyond wiring: the lifespan builds the
:class:`~taskhub.context.AppContext` (engines, clients, codecs, adapters — the mode is chosen
there, once, by picking adapters) and migrates an embedded database. ``taskhub openapi`` therefore
creates no data directory, writes no secret and hashes no password.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from taskhub import __version__
from taskhub.api import routers_for
from taskhub.auth.router import FORM_LOGIN_HINT, FORM_LOGIN_PATH
from taskhub.config import Settings
from taskhub.context import build_context
from taskhub.core.errors import install_error_handlers
from taskhub.core.keys import RemoteJwks
from taskhub.core.middleware import BodyGuardMiddleware, NegotiatingGZipMiddleware, SecurityHeadersMiddleware
from taskhub.core.observability import InFlight, RequestIdMiddleware, configure_logging, tracing_requested
from taskhub.core.openapi import install_openapi, unique_id
from taskhub.core.ratelimit import RateLimitMiddleware
from taskhub.db import migrate
from taskhub.events.runtime import EventsRuntime
from taskhub.graphql.router import GRAPHQL_PATH, graphql_router
from taskhub.ops.drain import Drain
from taskhub.ops.housekeeping import run_periodically
from taskhub.ops.metrics import Telemetry
from taskhub.urls import API_PREFIX
from taskhub.web.assets import StaticSite, packaged_root

if TYPE_CHECKING:
    from taskhub.core.tracing import Tracing

DESCRIPTION = """
Multi-user task management: JWT access tokens with rotating refresh tokens, user and admin roles,
tasks with status, priority, due dates and tags, filters, search, offset and keyset paging,
ETags, idempotent creation. Errors are RFC 9457 problem details.

Use **Authorize** with your email as *username* to call the endpoints from this page.
"""


def create_app(
    settings: Settings | None = None, *, tracing: Tracing | None = None, static_root: Path | None = None
) -> FastAPI:
    """The ASGI application.

    Args:
        settings: defaults to ``Settings()`` (environment and ``.env``).
        tracing: where spans go; by default OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
            (``core/tracing.py``), else no tracing at all (not even imported).
        static_root: the dashboard's files; by default the packaged ``web/static`` (tests of the
            hashing point it at a copy they change).

    ``settings.auto_migrate`` runs Alembic migrations at start-up; unset means True on SQLite
    (embedded mode) and False on PostgreSQL (run ``taskhub migrate`` once per deploy).
    ``settings.workers`` above 1 turns the in-process cache off (it cannot be shared).
    ``settings.service`` picks the routers (``api.routers_for``); ``/openapi.json`` always describes
    the whole public API, whichever part this process serves (the gateway shows one document).
    The lifespan raises ``ConfigurationError`` in production mode without ``TASKHUB_JWT_SECRET``
    (or, with EdDSA, without the key-set file or JWKS URL), and ``AssetError`` when the dashboard's
    page names a static file that does not exist.
    """
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    in_flight = InFlight()
    drain = Drain(in_flight, min_seconds=settings.drain_seconds)
    if tracing is None and tracing_requested():
        from taskhub.core.tracing import Tracing

        tracing = Tracing.from_environment("taskhub-api")
    # FastAPI's native OpenTelemetry hooks look up the global providers on every request even
    # when nothing exports; they run only with Taskhub's own tracing on (a provider of its own).
    telemetry: dict[str, Any] = (
        tracing.fastapi_telemetry() if tracing is not None else {"tracing": False, "metrics": False, "logs": False}
    )
    migrate_on_start = settings.is_sqlite if settings.auto_migrate is None else settings.auto_migrate

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Hash the dashboard's files first: a page naming a missing file stops the start-up.
        app.state.static_site = StaticSite(
            static_root or packaged_root(),
            base_url=settings.asset_base_url,
            watch=settings.env == "development",
        )
        ctx = build_context(settings)
        app.state.ctx = ctx
        if isinstance(ctx.tokens.keys, RemoteJwks):
            # Not fatal: the service starts while the auth service is down, and fetches on first use.
            await ctx.tokens.keys.fetch()
        app.state.telemetry = process_metrics = Telemetry.start(ctx)
        drain.install()
        if tracing is not None:
            tracing.start([ctx.db.primary, *ctx.db.readers], redis=ctx.redis is not None)
        purger: asyncio.Task[None] | None = None
        events = EventsRuntime(ctx)
        app.state.events = events
        try:
            if migrate_on_start:
                await migrate.upgrade(ctx.db.primary)
            await ctx.db.start()
            if settings.purge_interval > 0:
                purger = asyncio.create_task(run_periodically(ctx.db, settings))
            await events.start()
            yield
        finally:
            await events.stop()
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            drain.uninstall()
            await process_metrics.aclose()
            if tracing is not None:
                tracing.stop()
            await ctx.aclose()
            if tracing is not None:
                # Flushing may wait on the collector (OTEL_EXPORTER_OTLP_TIMEOUT): not on the loop.
                await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(
        title="Taskhub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # served by ops.docs from vendored Swagger UI files (works offline)
        redoc_url=None,
        redirect_slashes=False,  # a redirect would name http:// behind a TLS proxy; 404 is clearer
        telemetry=telemetry,  # type: ignore[arg-type]
        generate_unique_id_function=unique_id,
    )
    app.state.drain = drain
    install_error_handlers(app)
    api_router, root_router = routers_for(settings.service)
    app.include_router(api_router)
    if settings.service in ("all", "tasks"):  # split mode: GraphQL is served by the tasks service
        app.include_router(graphql_router(settings))
    app.include_router(root_router)
    whole = routers_for("all") if settings.service != "all" else (api_router, root_router)
    install_openapi(app, api_prefix=API_PREFIX + "/", routes=[*whole[0].routes, *whole[1].routes])

    # Added innermost first, so the request passes: security headers -> request id -> CORS -> gzip
    # -> rate limit -> body guard -> routes. The security headers policy is on every answer, the
    # bare 500 included; the request id wraps everything else (even a 413 or 429 carries it); CORS
    # comes next, so every answer (413/415/429 included) carries its headers and preflights are
    # answered before they could spend the anonymous budget; the body guard sits inside the rate
    # limiter, so oversized or non-JSON bodies are counted and their 413/415 carry RateLimit-*.
    app.add_middleware(
        BodyGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        api_prefix=API_PREFIX + "/",
        form_paths={FORM_LOGIN_PATH: FORM_LOGIN_HINT},
        body_timeout=settings.body_timeout,
    )
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware, trusted=settings.trusted_networks, prefix=(API_PREFIX + "/", GRAPHQL_PATH)
        )
    app.add_middleware(NegotiatingGZipMiddleware, minimum_size=1024)
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
    app.add_middleware(
        RequestIdMiddleware,
        access_log_enabled=settings.access_log,
        api_prefix=(API_PREFIX + "/", GRAPHQL_PATH),
        in_flight=in_flight,
    )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.cookie_secure)
    return app
