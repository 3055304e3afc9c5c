"""Read replicas: which one may serve a read, decided without a round trip.

A background task (:class:`ReplicaMonitor`) asks every replica for its replay position
(``pg_last_wal_replay_lsn()``) and the primary for its write position (``pg_current_wal_lsn()``)
every ``poll_interval`` seconds over connections of its own. A read names the oldest position it
may see, its *floor* (read-your-writes, see :mod:`taskhub.auth.cache`), and
:meth:`ReplicaMonitor.choose` answers from those cached numbers:

- a replica qualifies when its last poll succeeded within ``stale_after`` seconds (3), its breaker is
  closed, and its replay position is at or past both the floor and the primary's position of
  ``max_lag`` seconds ago (so nobody reads data more than ``max_lag`` seconds old);
- a replica that fails a poll or a query is skipped for ``cooldown`` seconds (circuit breaker) and
  forgets its position, so a restarted replica is used again only after a fresh poll;
- when none qualifies the caller reads from the primary (the last resort).

Positions are WAL LSNs as integers (bytes since ``0/0``). A node behind a replica URL that is not
in recovery (a promoted replica after a failover) is a primary: every floor below
:data:`PRIMARY_ONLY` is satisfied there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from taskhub.core.breaker import CircuitBreaker

log = structlog.get_logger("taskhub.db.replicas")

ANY_POSITION: Final = 0
"""The floor of a reader with no recent write: any replica within ``max_lag`` may answer."""
PRIMARY_ONLY: Final = 1 << 64
"""A floor no replica meets: the read goes to the primary (position unknown, e.g. Redis down)."""
CAUGHT_UP: Final = 1 << 63
"""The position reported for a node that is not in recovery (it is a primary)."""

_REPLICA_SQL = (
    "select pg_is_in_recovery(), "
    "(coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0'::pg_lsn)::bigint, inet_server_port()"
)
_PRIMARY_SQL = "select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"


def lsn_to_int(lsn: str) -> int:
    """``'16/B374D848'`` -> bytes since ``0/0`` (PostgreSQL's ``pg_lsn`` text form)."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def asyncpg_dsn(url: str) -> str:
    """The libpq-style DSN asyncpg wants for an SQLAlchemy URL (``postgresql+asyncpg://...``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(eq=False)
class Replica:
    """One replica: its engine, what the last poll saw, and its breaker.

    Attributes:
        name: ``host:port/database`` (no credentials), used in logs and route counts.
        position: replay position (LSN as int) at the last successful poll; None when unknown.
        server_port: ``inet_server_port()`` as the server reported it (which server answered).
        polled_at: ``time.monotonic()`` of the last successful poll.
    """

    name: str
    url: str
    engine: AsyncEngine
    breaker: CircuitBreaker
    position: int | None = None
    in_recovery: bool = True
    server_port: int | None = None
    polled_at: float = 0.0
    _conn: Any = field(default=None, repr=False)

    def forget(self, cooldown: bool = True) -> None:
        """Drop what the last poll saw (after a failed poll or query); trip the breaker."""
        self.position = None
        if cooldown:
            self.breaker.trip()


def replica_name(url: str) -> str:
    """``host:port/database`` of an SQLAlchemy URL."""
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"


class PositionTrail:
    """The primary's write position over the last ``span`` seconds: ``(monotonic time, LSN)``."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, position: int) -> None:
        """Record the primary's position at ``at``; keep one sample older than ``span``."""
        self.samples.append((at, position))
        while len(self.samples) > 1 and self.samples[1][0] <= at - self.span:
            self.samples.popleft()

    def position_at(self, at: float) -> int:
        """The primary's position at ``at``: the last sample taken at or before it, else the first
        sample (stricter than needed while the monitor is younger than ``span``); 0 with no sample."""
        if not self.samples:
            return 0
        found = self.samples[0][1]
        for sampled_at, position in self.samples:
            if sampled_at > at:
                break
            found = position
        return found


class ReplicaMonitor:
    """Polls replicas and the primary in the background; :meth:`choose` picks a replica for a read.

    Args:
        replicas: the replicas (their engines serve the reads; the monitor polls over its own
            connections). primary_url: SQLAlchemy URL of the primary (the writer).
        poll_interval: seconds between polls (0.2: a replica that caught up is used again within
            about 0.2 s). max_lag: seconds of data a reader without a floor may miss at most.
        cooldown: seconds a failed replica is skipped. timeout: seconds a poll may take.
        statement_cache_size: asyncpg's statement cache (0 behind PgBouncer in transaction mode).
    """

    def __init__(
        self,
        replicas: list[Replica],
        primary_url: str,
        *,
        poll_interval: float = 0.2,
        max_lag: float = 10.0,
        timeout: float = 1.0,
        statement_cache_size: int = 100,
    ) -> None:
        self.replicas = replicas
        self.primary_dsn = asyncpg_dsn(primary_url)
        self.poll_interval = poll_interval
        self.max_lag = max_lag
        self.timeout = timeout
        # A position stays a valid lower bound while the replica lives (replay only moves on; a
        # restart breaks the monitor's connection, and the next poll forgets the position), so an
        # old poll only means a replica that hangs without failing: skip it after 3 s.
        self.stale_after = max(3.0, 10 * poll_interval)
        self.statement_cache_size = statement_cache_size
        self.trail = PositionTrail(max_lag)
        self.fresh_floor = ANY_POSITION
        self._primary_conn: Any = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ routing

    def usable(self, replica: Replica, floor: int, now: float | None = None) -> bool:
        """True when ``replica`` may serve a read that must see ``floor``."""
        now = time.monotonic() if now is None else now
        if replica.position is None or replica.breaker.is_open or now - replica.polled_at > self.stale_after:
            return False
        return replica.position >= max(floor, self.fresh_floor)

    def choose(self, floor: int, *, exclude: tuple[Replica, ...] = ()) -> Replica | None:
        """A random replica that may serve a read with ``floor``, or None: read from the primary."""
        if floor >= PRIMARY_ONLY:
            return None
        now = time.monotonic()
        found = [r for r in self.replicas if r not in exclude and self.usable(r, floor, now)]
        return random.choice(found) if found else None  # noqa: S311 - load spreading, not security

    # ------------------------------------------------------------------ polling

    async def start(self) -> None:
        """Poll once (so the first requests can use replicas), then keep polling in the background."""
        if self._task is None:
            await self.poll()
            self._task = asyncio.create_task(self._run(), name="taskhub-replica-monitor")

    async def stop(self) -> None:
        """Stop polling and close the monitor's connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for conn in [self._primary_conn, *(r._conn for r in self.replicas)]:
            if conn is not None:
                conn.terminate()
        self._primary_conn = None
        for replica in self.replicas:
            replica._conn = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll()
            except Exception:  # never let the monitor die: routing would freeze on old numbers
                log.exception("replica_monitor_failed")

    async def poll(self) -> None:
        """One round: the primary and every replica at once."""
        await asyncio.gather(self._poll_primary(), *(self._poll_replica(r) for r in self.replicas))
        # What every replica must have replayed so that no reader misses more than max_lag seconds
        # of commits; computed once per round for the time of the next round, so the hot path
        # compares two integers and the bound holds until then.
        self.fresh_floor = self.trail.position_at(time.monotonic() + self.poll_interval - self.max_lag)

    async def _connect(self, dsn: str) -> Any:
        return await asyncpg.connect(
            dsn,
            timeout=self.timeout,
            statement_cache_size=self.statement_cache_size,
            server_settings={"application_name": "taskhub-replica-monitor"},
        )

    async def _fetch(self, conn: Any, sql: str) -> Any:
        return await conn.fetchrow(sql, timeout=self.timeout)

    async def _poll_primary(self) -> None:
        try:
            if self._primary_conn is None or self._primary_conn.is_closed():
                self._primary_conn = await self._connect(self.primary_dsn)
            (position,) = await self._fetch(self._primary_conn, _PRIMARY_SQL)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # No primary (a failover): no new samples, so replicas stay judged against the last
            # position the primary had; new commits cannot happen without a primary anyway.
            if self._primary_conn is not None:
                self._primary_conn.terminate()
            self._primary_conn = None
            return
        self.trail.add(time.monotonic(), int(position))

    async def _poll_replica(self, replica: Replica) -> None:
        try:
            if replica._conn is None or replica._conn.is_closed():
                replica._conn = await self._connect(asyncpg_dsn(replica.url))
            in_recovery, position, port = await self._fetch(replica._conn, _REPLICA_SQL)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if replica.position is not None:
                log.warning("replica_unreachable", replica=replica.name, error=type(exc).__name__)
            if replica._conn is not None:
                replica._conn.terminate()
            replica._conn = None
            replica.forget()
            return
        replica.in_recovery = bool(in_recovery)
        replica.position = int(position) if in_recovery else CAUGHT_UP
        replica.server_port = int(port)
        replica.polled_at = time.monotonic()
        replica.breaker.reset()

    def status(self) -> list[dict[str, Any]]:
        """What the monitor knows of each replica (for ``/ready`` and tests)."""
        now = time.monotonic()
        return [
            {
                "name": r.name,
                "server_port": r.server_port,
                "in_recovery": r.in_recovery,
                "position": r.position,
                "usable": self.usable(r, ANY_POSITION, now),
            }
            for r in self.replicas
        ]
