"""The connection pool of every engine: SQLAlchemy's asyncio queue pool, counting its waits.

A checkout that finds no idle connection and no room to overflow waits up to the pool timeout;
those waits (how many, how long, how many gave up) are what says "the pool is too small" before
requests start failing with 503, so they are counted per engine (the pool's ``logging_name``,
set by :mod:`taskhub.db.session`: ``primary``, ``replica1``, ...). A checkout that does not wait
costs three attribute reads more than SQLAlchemy's own.
"""

from __future__ import annotations

import time

from sqlalchemy import exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from taskhub.core.metrics import metrics


class InstrumentedQueuePool(AsyncAdaptedQueuePool):
    """:class:`~sqlalchemy.pool.AsyncAdaptedQueuePool` that reports waits to
    ``taskhub_db_pool_waits_total``, ``taskhub_db_pool_wait_seconds_total`` and
    ``taskhub_db_pool_timeouts_total`` (label ``engine`` = the pool's ``logging_name``)."""

    # Log under SQLAlchemy's own pool logger (kept at WARNING by SQLAlchemy), not under taskhub.*.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"

    def _do_get(self) -> ConnectionPoolEntry:
        # QueuePool._do_get blocks exactly when every pooled connection is out and the overflow
        # is used up (the same test as SQLAlchemy's own, on the same private attributes).
        if self._max_overflow > -1 and self._overflow >= self._max_overflow and self._pool.empty():
            return self._waited_get()
        return super()._do_get()

    def _waited_get(self) -> ConnectionPoolEntry:
        engine = self._orig_logging_name or "default"
        m = metrics()
        start = time.perf_counter()
        try:
            return super()._do_get()
        except exc.TimeoutError:
            m.db_pool_timeouts.labels(engine).inc()
            raise
        finally:
            m.db_pool_waits.labels(engine).inc()
            m.db_pool_wait_seconds.labels(engine).inc(time.perf_counter() - start)
