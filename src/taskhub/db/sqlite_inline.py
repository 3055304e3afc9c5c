"""SQLite reads on the event loop's own thread.

aiosqlite runs every call (cursor, execute, fetch, close) on a worker thread and hands the result
back through the event loop: four thread hops for a one-row read, which cost several times the
read itself (a point read from SQLite's page cache takes tens of microseconds). Read engines use
:class:`InlineConnection` instead: aiosqlite's connection and cursor API, executed inline.

This is safe for *reads* only: in WAL mode a reader never waits for the writer's lock, so a read
cannot block the loop on ``busy_timeout``. Writes keep aiosqlite's worker thread, because
``BEGIN IMMEDIATE`` may wait for another process (the CLI) holding the write lock.
It replaces aiosqlite's private queue to its worker thread (``_tx``), the narrowest seam there is;
the whole test suite reads through it, so an aiosqlite change that breaks it fails CI.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite


class _InlineQueue:
    """Stands in for aiosqlite's queue to its worker thread: runs each call at once, on the
    caller's thread, and settles its future before the caller awaits it."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting caller, as the worker thread does
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An ``aiosqlite.Connection`` whose calls run on the caller's thread (no worker thread)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _InlineQueue()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # the base class would start the worker thread here


def inline_connector(path: str, *, timeout: float) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: opens ``path`` with an inline connection.

    ``isolation_level=None`` leaves transaction control to SQLAlchemy (autocommit for reads).
    """

    async def create() -> InlineConnection:
        connection = InlineConnection(
            lambda: sqlite3.connect(path, timeout=timeout, isolation_level=None), iter_chunk_size=64
        )
        await connection
        return connection

    return create
