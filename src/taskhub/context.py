"""The typed application state built once in the lifespan and shared by every request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from taskhub.auth.cache import AuthCache
from taskhub.config import Settings
from taskhub.core.cache import ResponseCache
from taskhub.core.denylist import TokenDenylist
from taskhub.core.ratelimit import RateLimiter
from taskhub.core.security import PasswordHasher, TokenCodec
from taskhub.db.session import Database


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


def get_context(conn: HTTPConnection) -> AppContext:
    """The :class:`AppContext` of the running app (set by ``create_app``'s lifespan)."""
    ctx: AppContext = conn.app.state.ctx
    return ctx


async def context_dependency(conn: HTTPConnection) -> AppContext:
    """:func:`get_context` as an ``async`` dependency (a plain ``def`` one would cost a thread-pool hop)."""
    return get_context(conn)


Ctx = Annotated[AppContext, Depends(context_dependency)]
