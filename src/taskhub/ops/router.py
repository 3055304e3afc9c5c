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
    """Readiness: 200 when the database (and cache, when configured) answer, else 503."""
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
    all_ok = all(c["ok"] for c in checks.values())
    return Response(
        orjson.dumps({"status": "ok" if all_ok else "unavailable", "checks": checks}),
        status_code=200 if all_ok else 503,
        media_type="application/json",
    )
