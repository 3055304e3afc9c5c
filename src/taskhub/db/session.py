"""Engines and the one unit of work.

One :class:`Database` per process, built in the app's lifespan (no I/O at import). Endpoints ask
for a read or a write unit of work by name (``ReadSession``/``WriteSession`` in
:mod:`taskhub.context`); the CLI, housekeeping and workers use :meth:`Database.unit_of_work`
directly. Reads go to a read engine (a replica when configured, a separate connection pool on
SQLite), writes to the primary. On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so
concurrent writers queue on the busy timeout instead of failing with "database is locked" on lock
upgrade.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import structlog
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from taskhub.config import Settings
from taskhub.core.errors import DomainError
from taskhub.db.pool import InstrumentedQueuePool
from taskhub.db.sqlite_inline import inline_connector


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# orjson instead of the stdlib for JSON columns (tags, outbox payloads): decoding was ~5% of a
# list request's CPU (bench/RESULTS.md, profiles).
_JSON = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
# Read engines run every statement in autocommit: a single-statement read needs no BEGIN and no
# COMMIT round trip, and nothing is left to roll back when the connection returns to the pool.
_READ_ONLY = {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None, "skip_autocommit_rollback": True}


def _pool_args(name: str) -> dict[str, Any]:
    # The pool's logging_name labels its metrics (taskhub_db_pool_*{engine=name}).
    return {"poolclass": InstrumentedQueuePool, "pool_logging_name": name}


def _sqlite_engine(url: str, *, immediate: bool, readonly: bool = False, pool_timeout: float = 30) -> AsyncEngine:
    path = make_url(url).database or ":memory:"
    # An in-memory database keeps SQLAlchemy's own single-connection pool (it is the database).
    pool = _pool_args("reader" if readonly else "primary") if path != ":memory:" else {}
    if readonly:
        engine = create_async_engine(
            url, async_creator=inline_connector(path, timeout=30), **_JSON, **_READ_ONLY, **pool
        )
    else:
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_timeout=pool_timeout, **_JSON, **pool)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    if not readonly:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: str, settings: Settings, *, readonly: bool = False, name: str = "primary") -> AsyncEngine:
    return create_async_engine(
        url,
        **_JSON,
        **(_READ_ONLY if readonly else {}),
        **_pool_args(name),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout,
        pool_pre_ping=False,
        connect_args={"server_settings": {"application_name": "taskhub"}, "command_timeout": 30},
    )


def make_engine(url: str, settings: Settings, *, immediate: bool = True) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, foreign keys and a 30 s busy timeout, and
    transactions that start with ``BEGIN IMMEDIATE`` (or plain ``BEGIN`` without ``immediate``)."""
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, immediate=immediate, pool_timeout=settings.database_pool_timeout)
    return _postgres_engine(url, settings)


def make_read_engine(url: str, settings: Settings, *, name: str = "replica") -> AsyncEngine:
    """An engine for reads only: autocommit (each statement sees the latest committed data, no
    BEGIN/COMMIT round trips); on SQLite a pool of its own, so reads never wait for the writer.
    ``name`` labels its pool's metrics (SQLite's read pool is always ``reader``)."""
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, immediate=False, readonly=True)
    return _postgres_engine(url, settings, readonly=True, name=name)


class Database:
    """The primary engine, optional read engines, and the unit of work over them.

    Attributes:
        primary: engine for writes. readers: autocommit engines for reads, one per replica, or
            one on the primary's database without replicas (on SQLite a second pool on the same
            file, so reads never queue behind ``BEGIN IMMEDIATE``).
    """

    def __init__(self, settings: Settings) -> None:
        url = settings.resolved_database_url
        if settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.primary = make_engine(url, settings, immediate=True)
        if settings.database_replica_urls:
            self.readers = [
                make_read_engine(u, settings, name=f"replica{i}")
                for i, u in enumerate(settings.database_replica_urls, start=1)
            ]
        elif self.dialect == "sqlite":
            self.readers = [make_read_engine(url, settings)]
        else:
            # The primary's own pool in autocommit mode (one pool per process, not two; on asyncpg
            # the isolation level is client-side, so switching it costs no round trip).
            self.readers = [self.primary.execution_options(isolation_level="AUTOCOMMIT")]
        self._write_sessions = async_sessionmaker(self.primary, expire_on_commit=False, autoflush=False)
        self._read_sessions = [async_sessionmaker(e, expire_on_commit=False, autoflush=False) for e in self.readers]

    def _session(self, *, readonly: bool) -> AsyncSession:
        if readonly:
            return random.choice(self._read_sessions)()  # noqa: S311 - load spreading, not security
        return self._write_sessions()

    @asynccontextmanager
    async def unit_of_work(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """Yield a session; commit once when the block succeeds, roll back when it raises.

        A :class:`~taskhub.core.errors.DomainError` with ``persist=True`` commits what was written
        before it and still propagates (refresh-token reuse revokes the family *and* answers 401).
        Callbacks registered with :func:`on_commit` run after a successful commit only.
        ``readonly`` picks a read engine (autocommit: each statement sees the latest committed
        data; nothing is committed, and ``on_commit`` callbacks never run there).
        """
        session = self._session(readonly=readonly)
        if readonly:
            # Read engines are in autocommit: there is nothing to commit or roll back, and skipping
            # the calls saves a driver round trip (a thread hop on SQLite) per read.
            try:
                yield session
            finally:
                await session.close()
            return
        try:
            yield session
        except DomainError as exc:
            if exc.persist:
                await session.commit()
                await run_after_commit(session)
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
            await run_after_commit(session)
        finally:
            await session.close()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        engines = {id(e.sync_engine.pool): e for e in [self.primary, *self.readers]}
        for engine in engines.values():
            await engine.dispose()


AfterCommit = Callable[[], Awaitable[None]]


def on_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` after the unit of work commits (never if it rolls back).

    Used for side effects that must not see uncommitted data, such as cache invalidation.
    """
    session.info.setdefault("after_commit", []).append(callback)


async def run_after_commit(session: AsyncSession) -> None:
    """Run and clear the callbacks registered with :func:`on_commit`; failures are logged, not raised."""
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:  # a cache outage must not turn a committed write into an error
            structlog.get_logger("taskhub.db").warning("after_commit_failed", exc_info=True)
