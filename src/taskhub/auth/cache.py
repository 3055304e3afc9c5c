"""A per-process cache of positive authentication decisions, invalidated per user by data changes.

Every authenticated request would otherwise load the caller's user row and check the denylist and
the session's family (the largest single item of a read's CPU in ``bench/RESULTS.md``). The
verified ``jti -> user`` decision is kept for up to ``ttl`` seconds.

Correctness rests on two rules:
- every service that changes a user's authentication state (password, profile or email change,
  role or active change, deletion, logout, refresh-token reuse) calls
  :func:`invalidate_after_commit` for that user, which bumps the user's *generation* once the
  change commits; task writes never do;
- a reader takes the user's generation *before* it reads the database, so a decision computed from
  pre-change rows is stored under a superseded generation and never served.

It is only correct when every such change goes through this process: ``create_app`` selects it for
one-process deployments without Redis or read replicas, and :class:`NullAuthCache` otherwise.
Changes made by another process (the ``create-admin`` CLI) are seen after at most ``ttl`` seconds.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Protocol

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from taskhub.db.session import on_commit
from taskhub.users.models import User


class AuthCache(Protocol):
    """What ``auth.service.authenticate`` and the services that change auth state need."""

    hits: int
    misses: int

    def generation(self, user_id: uuid.UUID) -> int:
        """The user's current generation; take it before reading the database."""

    def get(self, jti: str, user_id: uuid.UUID) -> User | None:
        """The cached user for an access token ``jti`` of ``user_id``, or None."""

    def put(self, jti: str, user: User, generation: int) -> None:
        """Remember a positive decision made from data read at ``generation``."""

    def invalidate(self, user_id: uuid.UUID) -> None:
        """Forget every decision about ``user_id`` (after a change to their authentication state)."""


class MemoryAuthCache:
    """LRU of ``jti -> (user, generation, expiry)``; ``ttl`` in seconds, at most ``max_entries``."""

    def __init__(self, *, ttl: float = 30.0, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._generations: dict[uuid.UUID, int] = {}
        self._entries: OrderedDict[str, tuple[User, int, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def generation(self, user_id: uuid.UUID) -> int:
        return self._generations.get(user_id, 0)

    def get(self, jti: str, user_id: uuid.UUID) -> User | None:
        entry = self._entries.get(jti)
        if (
            entry is None
            or entry[0].id != user_id
            or entry[1] != self._generations.get(user_id, 0)
            or entry[2] < time.monotonic()
        ):
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def put(self, jti: str, user: User, generation: int) -> None:
        if generation != self._generations.get(user.id, 0):
            return  # the data was read before a change that may have altered it
        self._entries[jti] = (_snapshot(user), generation, time.monotonic() + self.ttl)
        self._entries.move_to_end(jti)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, user_id: uuid.UUID) -> None:
        self._generations[user_id] = self._generations.get(user_id, 0) + 1


def _snapshot(user: User) -> User:
    """A transient copy of ``user``: belongs to no session, so a later rollback or close of the
    session that loaded it cannot expire it under other requests."""
    columns = sa_inspect(User).column_attrs
    return User(**{attr.key: getattr(user, attr.key) for attr in columns})


class NullAuthCache:
    """No caching (several processes, Redis mode or read replicas: the database decides every time)."""

    hits = 0
    misses = 0

    def generation(self, user_id: uuid.UUID) -> int:
        return 0

    def get(self, jti: str, user_id: uuid.UUID) -> User | None:
        return None

    def put(self, jti: str, user: User, generation: int) -> None:
        return None

    def invalidate(self, user_id: uuid.UUID) -> None:
        return None


def invalidate_after_commit(session: AsyncSession, cache: AuthCache, user_id: uuid.UUID) -> None:
    """Forget cached decisions about ``user_id`` once ``session``'s unit of work commits.

    Called by every service that changes authentication state (see the module docstring).
    """

    async def _invalidate() -> None:
        cache.invalidate(user_id)

    on_commit(session, _invalidate)
