"""A per-process cache of positive authentication decisions for read requests.

Every authenticated request would otherwise load the caller's user row and check the denylist and
the session's family (the largest single item of a read's CPU in ``bench/RESULTS.md``). For a
GET, the verified ``(jti -> user)`` decision is kept for up to ``ttl`` seconds.

Correctness rests on two rules:
- any committed write that can change authentication state (everything outside ``/tasks``:
  logout, refresh-token reuse, password or profile change, admin changes, deletions) clears the
  whole cache after it commits; task writes never change it;
- a reader takes the cache generation *before* it reads the database, so a decision computed from
  pre-write rows is stored under a superseded generation and never served.

It is therefore only correct when every such write goes through this process: ``create_app``
selects it for one-process deployments without Redis and :class:`NullAuthCache` otherwise. Changes
made by another process (the ``create-admin`` CLI) are seen after at most ``ttl`` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from sqlalchemy import inspect as sa_inspect

from taskhub.users.models import User


class AuthCache(Protocol):
    """What ``authenticate`` needs from an authentication cache."""

    hits: int
    misses: int

    @property
    def generation(self) -> int:
        """Current generation; take it before reading the database."""

    def get(self, jti: str) -> User | None:
        """The cached user for an access token ``jti``, or None."""

    def put(self, jti: str, user: User, generation: int) -> None:
        """Remember a positive decision made from data read at ``generation``."""

    def clear(self) -> None:
        """Forget every decision (after a write that may change authentication state)."""


class MemoryAuthCache:
    """LRU of ``jti -> (user, generation, expiry)``; ``ttl`` in seconds, at most ``max_entries``."""

    def __init__(self, *, ttl: float = 30.0, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._generation = 0
        self._entries: OrderedDict[str, tuple[User, int, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, jti: str) -> User | None:
        entry = self._entries.get(jti)
        if entry is None or entry[1] != self._generation or entry[2] < time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def put(self, jti: str, user: User, generation: int) -> None:
        if generation != self._generation:
            return  # the data was read before a write that may have changed it
        self._entries[jti] = (_snapshot(user), generation, time.monotonic() + self.ttl)
        self._entries.move_to_end(jti)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()


def _snapshot(user: User) -> User:
    """A transient copy of ``user``: belongs to no session, so a later rollback or close of the
    session that loaded it cannot expire it under other requests."""
    columns = sa_inspect(User).column_attrs
    return User(**{attr.key: getattr(user, attr.key) for attr in columns})


class NullAuthCache:
    """No caching (several processes, or Redis mode: the database decides every time)."""

    hits = 0
    misses = 0
    generation = 0

    def get(self, jti: str) -> User | None:
        return None

    def put(self, jti: str, user: User, generation: int) -> None:
        return None

    def clear(self) -> None:
        return None
