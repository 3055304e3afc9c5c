"""``/health`` (liveness, touches nothing) and ``/ready`` (dependency checks)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from taskhub import __version__
from taskhub.context import get_context
from taskhub.core.responses import model_response
from taskhub.ops.schemas import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health(request: Request) -> Response:
    """Liveness: 200 while the process serves; checks no dependency."""
    ctx = get_context(request)
    return model_response(
        Health(status="ok", version=__version__, uptime_s=round(time.monotonic() - ctx.started_at, 3))
    )


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready, "description": "A dependency is down"}})
async def ready(request: Request) -> Response:
    """Readiness: 200 when the database (and cache, when configured) answer, else 503. The
    ``broker`` check (and the outbox backlog) is reported but does not make the instance unready."""
    ctx = get_context(request)
    checks: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        async with ctx.db.primary.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "latency_ms": round((time.perf_counter() - start) * 1000, 2)}
    except Exception as exc:  # any driver error means "not ready"
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    if ctx.settings.redis_url:
        start = time.perf_counter()
        ok = await ctx.cache.ping()
        checks["cache"] = {
            "ok": ok,
            "backend": "redis",
            "latency_ms": round((time.perf_counter() - start) * 1000, 2),
        }
    else:
        checks["cache"] = {"ok": True, "backend": "in-process"}
    # The broker is reported, never required: while it is down writes keep working (events wait
    # in the outbox), so taking the instance out of a load balancer would only make things worse.
    all_ok = checks["database"]["ok"] and checks["cache"]["ok"]
    checks["broker"] = await request.app.state.events.readiness()
    return Response(
        orjson.dumps({"status": (status := _readiness(request, all_ok)), "checks": checks}),
        status_code=200 if status == "ok" else 503,
        media_type="application/json",
    )


def _readiness(request: Request, checks_ok: bool) -> str:
    """``ok``, ``unavailable`` (a required check failed) or ``draining`` (SIGTERM received:
    ``ops/drain.py``; the load balancer must stop sending, whatever the checks say)."""
    if request.app.state.drain.draining:
        return "draining"
    return "ok" if checks_ok else "unavailable"
