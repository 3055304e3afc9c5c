"""Engines and the one unit of work.

One :class:`Database` per process, built in the app's lifespan (no I/O at import). Endpoints ask
for a read or a write unit of work by name (``ReadSession``/``WriteSession`` in
:mod:`taskhub.context`); the CLI, housekeeping and workers use :meth:`Database.unit_of_work`
directly. Writes go to the primary. Reads go to a replica that has replayed the reader's *floor*
(the WAL position of their last write, read-your-writes; :mod:`taskhub.db.replicas` picks one from
cached positions, no round trip), else to the primary: its own pool in autocommit on PostgreSQL, a
separate connection pool on SQLite. On SQLite, write transactions start with ``BEGIN IMMEDIATE``
so concurrent writers queue on the busy timeout instead of failing with "database is locked" on
lock upgrade. Connection failures become :class:`DatabaseUnavailable` (503); reads retry them on
another replica or the primary first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
import orjson
import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from taskhub.config import ConfigurationError, Settings
from taskhub.core.breaker import CircuitBreaker
from taskhub.core.errors import DomainError, ServiceUnavailable
from taskhub.core.metrics import metrics
from taskhub.db.pool import InstrumentedQueuePool
from taskhub.db.replicas import PRIMARY_ONLY, Replica, ReplicaMonitor, replica_name
from taskhub.db.sqlite_inline import inline_connector

log = structlog.get_logger("taskhub.db")


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


def _unnamed_statement() -> str:
    return ""


def _postgres_engine(url: str, settings: Settings, *, readonly: bool = False, name: str = "primary") -> AsyncEngine:
    connect_args: dict[str, Any] = {
        "server_settings": {"application_name": "taskhub"},
        "command_timeout": 30,
        # A node that is gone (a failover, a partition) must cost seconds, not asyncpg's 60 s.
        "timeout": settings.database_connect_timeout,
    }
    if settings.database_pgbouncer:
        # PgBouncer in transaction mode (1.18, Debian 12; no max_prepared_statements before 1.21)
        # may hand each transaction another server connection, where a statement prepared in an
        # earlier one does not exist. asyncpg prepares every statement; with no caches and unnamed
        # statements nothing outlives one statement. The two halves of one statement stay on one
        # server connection even in autocommit: asyncpg sends Parse/Describe/Flush, then
        # Bind/Execute/Sync, and PgBouncer releases a server only at ReadyForQuery (after a Sync);
        # tests/db/test_pgbouncer.py holds that under contention.
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unnamed_statement,
        }
    return create_async_engine(
        url,
        **_JSON,
        **(_READ_ONLY if readonly else {}),
        **_pool_args(name),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout,
        pool_pre_ping=False,
        connect_args=connect_args,
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


class DatabaseUnavailable(ServiceUnavailable):
    """503: the database could not be reached (a failover, a restart): retry shortly.

    Raised by :meth:`Database.unit_of_work` for connection failures, so that a request that lost
    its connection answers a clean 503 with ``Retry-After`` instead of a 500. For a write whose
    ``COMMIT`` lost the connection the outcome is unknown (the server may have committed it).
    """


def is_connection_error(exc: BaseException) -> bool:
    """True for failures of the connection rather than of the statement: refused or timed-out
    connects, a connection that died (SQLAlchemy invalidated it), SQLSTATE class 08 (connection
    exception) and 57P (shutdown, cannot connect now), and 25006 (a write reached a node that
    turned read-only: a demoted primary during a failover)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and (state.startswith(("08", "57P")) or state == "25006")


def is_serialization_failure(exc: BaseException) -> bool:
    """True for SQLSTATE 40001: a concurrent transaction changed the row first. Plain READ COMMITTED
    updates wait and re-check instead, but postgres_fdw runs the remote side of a transaction in
    REPEATABLE READ, so on a shard (``db/sharding.py``) a lost race on the same row ends this way."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(orig, "sqlstate", None) == "40001"


_READERS_KEY = "taskhub.read_your_writes"


def read_your_writes(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Let ``user_id`` read what ``session``'s unit of work writes as soon as it commits.

    After the commit, the unit of work records the primary's WAL position for every user named
    here (:class:`WritePositions`); their reads then go to a replica that has replayed it, or to
    the primary. Called for the authenticated caller of every write (``context.write_session``),
    for the user whose authentication state a write changes (``auth.cache.invalidate_after_commit``)
    and for the user a login issues tokens to. No effect without replicas.
    """
    session.info.setdefault(_READERS_KEY, set()).add(user_id)


def position_tag(session: AsyncSession) -> str:
    """The read floor ``session`` was opened at, as a cache-key part: ``"<hex>:"``, ``"p:"`` for the
    primary-only floor, ``""`` without replicas (keys are then what they were before replicas)."""
    if not isinstance(session, RoutedReadSession) or session.database is None or session.database.monitor is None:
        return ""
    return "p:" if session.floor >= PRIMARY_ONLY else f"{session.floor:x}:"


class WritePositions(Protocol):
    """Where the WAL positions of users' last writes are kept (the auth cache: in Redis, shared by
    every instance, or in-process); read back per request as the user's read floor."""

    async def record_positions(self, user_ids: Collection[uuid.UUID], position: int) -> None:
        """Remember that ``user_ids`` must read at ``position`` or later (never lowering a floor)."""


class RoutedReadSession(AsyncSession):
    """A read-only session whose statements retry elsewhere when the connection fails.

    Reads are idempotent and run in autocommit (each statement on its own), so a statement that
    lost its connection is run again on another replica that meets the same floor, else on the
    primary (once more on the primary after a failure there: a pooled connection that died in a
    failover); a failed replica is skipped until its breaker closes and a poll sees it again.
    Only :meth:`execute` retries: it is what the repositories' reads use.
    """

    database: Database | None = None
    floor: int = PRIMARY_ONLY
    replica: Replica | None = None
    tried: tuple[Replica, ...] = ()
    retried_on_primary: bool = False

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                result = await super().execute(*args, **kwargs)
            except Exception as exc:
                if self.database is None or not is_connection_error(exc) or self.retried_on_primary:
                    raise
                await self.database._reroute(self, exc)
            else:
                if self.database is not None:
                    target = self.replica.name if self.replica else "primary"
                    self.database.route_counts[target] += 1
                    metrics().db_read_statements.labels(target).inc()
                return result


class Database:
    """The primary engine, the read engines, and the unit of work over them.

    Attributes:
        primary: engine for writes. primary_reader: autocommit engine on the primary's database for
            reads that go there (the primary's own pool in autocommit on PostgreSQL; a second pool
            on SQLite, so reads never queue behind ``BEGIN IMMEDIATE``). monitor: the replicas and
            what their last poll saw (None without ``TASKHUB_DATABASE_REPLICA_URLS``).
        positions: where users' write positions are recorded (set by ``context.build_context``).
        route_counts: statements answered per read target (``"primary"`` or a replica's
            ``host:port/database``); a statement that failed and was retried counts once, where
            it succeeded.
    """

    def __init__(self, settings: Settings) -> None:
        url = settings.resolved_database_url
        if settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.primary = make_engine(url, settings, immediate=True)
        if self.dialect == "sqlite":
            self.primary_reader = make_read_engine(url, settings)
        else:
            # The primary's own pool in autocommit mode (one pool per process, not two; on asyncpg
            # the isolation level is client-side, so switching it costs no round trip).
            self.primary_reader = self.primary.execution_options(isolation_level="AUTOCOMMIT")
        self.monitor: ReplicaMonitor | None = None
        if settings.database_replica_urls:
            if self.dialect != "postgresql":
                raise ConfigurationError("TASKHUB_DATABASE_REPLICA_URLS needs a PostgreSQL TASKHUB_DATABASE_URL")
            replicas = [
                Replica(
                    replica_name(u), u, make_read_engine(u, settings, name=f"replica{i}"), CircuitBreaker(cooldown=2.0)
                )
                for i, u in enumerate(settings.database_replica_urls, start=1)
            ]
            self.monitor = ReplicaMonitor(
                replicas,
                url,
                poll_interval=settings.database_replica_poll_interval,
                max_lag=settings.database_replica_max_lag,
                statement_cache_size=0 if settings.database_pgbouncer else 100,
            )
        self.positions: WritePositions | None = None
        self.route_counts: Counter[str] = Counter()
        self._write_sessions = async_sessionmaker(self.primary, expire_on_commit=False, autoflush=False)
        self._read_sessions = async_sessionmaker(
            self.primary_reader, class_=RoutedReadSession, expire_on_commit=False, autoflush=False
        )

    @property
    def readers(self) -> list[AsyncEngine]:
        """Every read engine: the primary's reader first, then the replicas' (metrics, tracing)."""
        replicas = [r.engine for r in self.monitor.replicas] if self.monitor is not None else []
        return [self.primary_reader, *replicas]

    @property
    def tracks_positions(self) -> bool:
        """True when reads can go to replicas, so writes record their WAL position for their users."""
        return self.monitor is not None

    async def start(self) -> None:
        """Start the replica monitor (one poll first, so the first requests can use replicas)."""
        if self.monitor is not None:
            await self.monitor.start()

    def _read_session(self, floor: int) -> RoutedReadSession:
        session = self._read_sessions()
        session.database = self
        session.floor = floor
        replica = self.monitor.choose(floor) if self.monitor is not None else None
        if replica is not None:
            session.replica = replica
            session.tried = (replica,)
            _bind(session, replica.engine)
        return session

    async def _reroute(self, session: RoutedReadSession, exc: BaseException) -> None:
        """Move ``session`` to the next target after its connection failed with ``exc``."""
        failed = session.replica
        await session.close()  # autocommit: nothing to lose but the broken connection
        if failed is not None:
            failed.forget()
            log.warning("replica_read_failed", replica=failed.name, error=type(exc).__name__)
        replica = None
        if self.monitor is not None and failed is not None:
            replica = self.monitor.choose(session.floor, exclude=session.tried)
        if replica is None:
            # The primary: the last resort, and once (a pooled connection that died in a failover;
            # SQLAlchemy has invalidated the pool, so this attempt gets a fresh connection).
            session.retried_on_primary = failed is None
            session.replica = None
            _bind(session, self.primary_reader)
        else:
            session.replica = replica
            session.tried = (*session.tried, replica)
            _bind(session, replica.engine)

    @asynccontextmanager
    async def unit_of_work(self, *, readonly: bool = False, floor: int = PRIMARY_ONLY) -> AsyncIterator[AsyncSession]:
        """Yield a session; commit once when the block succeeds, roll back when it raises.

        A :class:`~taskhub.core.errors.DomainError` with ``persist=True`` commits what was written
        before it and still propagates (refresh-token reuse revokes the family *and* answers 401).
        After a commit, users named with :func:`read_your_writes` get the commit's WAL position
        recorded (with replicas), then callbacks registered with :func:`on_commit` run.
        ``readonly`` picks a read engine (autocommit: each statement sees the latest committed
        data; nothing is committed, and ``on_commit`` callbacks never run there): a replica that
        has replayed ``floor`` (a WAL position; see :mod:`taskhub.db.replicas`), else the primary.
        The default floor, :data:`~taskhub.db.replicas.PRIMARY_ONLY`, reads from the primary.

        Raises:
            DatabaseUnavailable: the connection failed (503 with ``Retry-After``).
        """
        if readonly:
            read = self._read_session(floor)
            # Read engines are in autocommit: there is nothing to commit or roll back, and skipping
            # the calls saves a driver round trip (a thread hop on SQLite) per read.
            try:
                yield read
            except Exception as exc:
                if is_connection_error(exc):
                    log.warning("database_unavailable", work="read", error=repr(exc)[:300])
                    raise DatabaseUnavailable(_UNAVAILABLE, headers=_RETRY) from exc
                raise
            finally:
                await read.close()
            return
        session = self._write_sessions()
        try:
            yield session
        except DomainError as exc:
            if exc.persist:
                await self._commit(session)
            else:
                await session.rollback()
            raise
        except Exception as exc:
            await _rollback_quietly(session)
            if is_connection_error(exc):
                log.warning("database_unavailable", work="write", error=repr(exc)[:300])
                raise DatabaseUnavailable(_UNAVAILABLE, headers=_RETRY) from exc
            raise
        except BaseException:
            await _rollback_quietly(session)
            raise
        else:
            await self._commit(session)
        finally:
            await session.close()

    async def _commit(self, session: AsyncSession) -> None:
        try:
            await session.commit()
        except Exception as exc:
            if is_connection_error(exc):
                await _rollback_quietly(session)
                log.warning("database_unavailable", work="commit", error=repr(exc)[:300])
                raise DatabaseUnavailable(
                    "The database connection was lost while committing; the change may or may not "
                    "have been saved. Read it back before retrying a request that is not idempotent.",
                    headers=_RETRY,
                ) from exc
            raise
        await self._record_position(session)
        await run_after_commit(session)

    async def _record_position(self, session: AsyncSession) -> None:
        # Before the after-commit callbacks: a reader that sees the user's new cache or auth
        # generation must also see the new floor (auth.cache reads the generation first).
        users: set[uuid.UUID] | None = session.info.pop(_READERS_KEY, None)
        if not users or self.monitor is None or self.positions is None:
            return
        position = await self.current_position()
        if position is None:
            log.error("write_position_unknown", users=len(users))
            return
        await self.positions.record_positions(users, position)

    async def current_position(self, attempts: int = 3) -> int | None:
        """The primary's current WAL write position (``pg_current_wal_lsn()``), read after a commit,
        so it is at or past that commit's record; None when the primary did not answer (retried
        ``attempts`` times, 0.5 s apart: after a failover the writer reaches the new primary, whose
        position includes every acknowledged commit)."""
        for attempt in range(attempts):
            try:
                async with self.primary_reader.connect() as conn:
                    return int((await conn.execute(text(_POSITION_SQL))).scalar_one())
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                if attempt + 1 < attempts:
                    await asyncio.sleep(0.5)
        return None

    async def dispose(self) -> None:
        """Stop the replica monitor and close every pooled connection."""
        engines = [self.primary, self.primary_reader]
        if self.monitor is not None:
            await self.monitor.stop()
            engines += [r.engine for r in self.monitor.replicas]
        unique = {id(e.sync_engine.pool): e for e in engines}
        for engine in unique.values():
            await engine.dispose()


_UNAVAILABLE = "The database is unavailable (a failover or restart may be under way); retry shortly."
_RETRY = {"Retry-After": "1"}
_POSITION_SQL = "select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"


def _bind(session: AsyncSession, engine: AsyncEngine) -> None:
    session.bind = engine
    session.sync_session.bind = engine.sync_engine


async def _rollback_quietly(session: AsyncSession) -> None:
    # A rollback on a connection that just died fails too; the server has rolled back already.
    try:
        await session.rollback()
    except Exception as exc:
        if not is_connection_error(exc):
            raise


AfterCommit = Callable[[], Awaitable[None]]


def on_commit(session: AsyncSession, callback: AfterCommit, *, key: object = None) -> None:
    """Run ``callback`` after the unit of work commits (never if it rolls back).

    Used for side effects that must not see uncommitted data, such as cache invalidation. With a
    ``key`` (hashable), a second callback under the same key in the same unit of work is dropped:
    a unit that changes many rows of one owner invalidates that owner's cache once.
    """
    if key is not None:
        keys: set[object] = session.info.setdefault("after_commit_keys", set())
        if key in keys:
            return
        keys.add(key)
    session.info.setdefault("after_commit", []).append(callback)


async def run_after_commit(session: AsyncSession) -> None:
    """Run and clear the callbacks registered with :func:`on_commit`; failures are logged, not raised."""
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    session.info.pop("after_commit_keys", None)
    for callback in callbacks:
        try:
            await callback()
        except Exception:  # a cache outage must not turn a committed write into an error
            log.warning("after_commit_failed", exc_info=True)
