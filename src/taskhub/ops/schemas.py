"""Bodies of the operational endpoints."""

from pydantic import BaseModel


class Health(BaseModel):
    """``GET /health``: ``uptime_s`` in seconds."""

    status: str
    version: str
    uptime_s: float
