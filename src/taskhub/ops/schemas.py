"""Bodies of the operational endpoints."""

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    """``GET /health``: ``uptime_s`` in seconds."""

    status: str
    version: str
    uptime_s: float


class Check(BaseModel):
    """One dependency's state; ``latency_ms`` in milliseconds, ``error`` the exception's class name."""

    ok: bool
    latency_ms: float | None = None
    error: str | None = None
    backend: str | None = None


class Ready(BaseModel):
    """``GET /ready``: 200 with ``status: ok`` when every check passed, else 503 ``unavailable``."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, Check]
