"""Prometheus metrics of every Taskhub process: the definitions, the exposition and the samplers.

One :class:`Metrics` per process (:func:`metrics`), on prometheus-client's default registry.
Names follow the Prometheus naming guide (``taskhub_`` prefix, base units, ``_total`` on counters);
``docs/operations.md`` ("Observing Taskhub") lists them with what each alert built on them means.

Several processes (``taskhub serve --workers N``): the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory before the workers start, every process writes its values to memory-mapped files
there, and whichever worker answers ``/metrics`` adds them up (prometheus-client's multiprocess
mode). Counters and histograms are summed over every process that ever ran (a restarted worker's
counts are kept); gauges are summed (``livesum``) or maxed (``livemax``) over the live ones.

What costs nothing per request is read at scrape time (or every :data:`SAMPLE_INTERVAL` seconds
in multiprocess mode, so that every worker's value reaches the files): connection-pool occupancy,
cache hit and miss counts (kept as plain integers by the caches), process CPU and memory. The
outbox backlog is one bounded query per scrape (``ops/metrics.py``), never a per-process value.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import Pool

    from taskhub.db.session import Database

#: Upper bounds of the latency histograms, seconds. 0.05 and 0.1 are bounds, so the seed's p95
#: targets (50 ms, 100 ms) are read exactly, not interpolated inside a wider bucket.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Handler durations of the worker: longer tails (emails, retries).
HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds between two samples of the per-process values in multiprocess mode.
SAMPLE_INTERVAL = 5.0
#: HTTP methods kept as label values; any other method is counted as ``other`` (bounded labels).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The ``route`` label of a request that matched no route (any unknown path: bounded labels).
UNMATCHED = "unmatched"
#: The Content-Type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess directory when this process shares its metrics with siblings, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Every metric a Taskhub process may report (API, relay, worker); see the module docstring.

    Created once per process by :func:`metrics`; a metric that a process never touches is simply
    not exposed by it (no labels, no samples).
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        r = registry
        # HTTP (core.observability.RequestIdMiddleware)
        self.http_requests = Counter(
            "taskhub_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "taskhub_http_request_duration_seconds",
            "Time from the first byte of the request to the end of the response, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "taskhub_http_requests_in_flight",
            "HTTP requests being served now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        # Database connection pools (sampled; waits counted by db.pool.InstrumentedQueuePool)
        self.db_pool_size = Gauge(
            "taskhub_db_pool_size_connections",
            "Configured pool size (connections kept open), per engine.",
            ["engine"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.db_pool_checked_out = Gauge(
            "taskhub_db_pool_checked_out_connections",
            "Connections in use by a unit of work, per engine.",
            ["engine"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.db_pool_overflow = Gauge(
            "taskhub_db_pool_overflow_connections",
            "Connections open beyond the pool size (max_overflow), per engine.",
            ["engine"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.db_pool_waits = Counter(
            "taskhub_db_pool_waits",
            "Checkouts that found the pool exhausted and had to wait, per engine.",
            ["engine"],
            registry=r,
        )
        self.db_pool_wait_seconds = Counter(
            "taskhub_db_pool_wait_seconds",
            "Time spent waiting for a pooled connection, per engine.",
            ["engine"],
            registry=r,
        )
        self.db_read_statements = Counter(
            "taskhub_db_read_statements",
            "Read statements answered, per target: primary, or a replica's host:port/database.",
            ["target"],
            registry=r,
        )
        self.db_pool_timeouts = Counter(
            "taskhub_db_pool_timeouts",
            "Checkouts that gave up after TASKHUB_DATABASE_POOL_TIMEOUT (answered 503), per engine.",
            ["engine"],
            registry=r,
        )
        # Caches (sampled from the caches' own counters)
        self.cache_requests = Counter(
            "taskhub_cache_requests",
            "Cache lookups by cache (response: task-list pages, auth: authentication decisions) and result.",
            ["cache", "result"],
            registry=r,
        )
        # Rate limits (counted where a request is rejected)
        self.rate_limit_rejections = Counter(
            "taskhub_rate_limit_rejections",
            "Requests rejected with 429, by rate-limit policy (anon, auth, user).",
            ["policy"],
            registry=r,
        )
        # The process (sampled), summed over the workers of one instance
        self.process_cpu = Counter(
            "taskhub_process_cpu_seconds",
            "User and system CPU time of the Taskhub processes.",
            registry=r,
        )
        self.process_memory = Gauge(
            "taskhub_process_resident_memory_bytes",
            "Resident memory of the live Taskhub processes.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cpu_limit = Gauge(
            "taskhub_cpu_limit_cores",
            "CPU cores this instance may use (cgroup quota, else the machine's CPUs).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.memory_limit = Gauge(
            "taskhub_memory_limit_bytes",
            "Memory this instance may use (cgroup limit, else the machine's memory).",
            registry=r,
            multiprocess_mode="livemax",
        )
        # Events: live streams, relay and worker (events/, worker/)
        self.sse_streams = Gauge(
            "taskhub_sse_streams_open",
            "Server-Sent Event streams open (GET /events/stream).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.relay_published = Counter(
            "taskhub_relay_published_events",
            "Outbox events delivered and marked sent by the relay, by sink (rabbitmq, in-process).",
            ["sink"],
            registry=r,
        )
        self.relay_failures = Counter(
            "taskhub_relay_failures",
            "Relay passes that failed, by stage (deliver: the broker or a handler; database).",
            ["stage"],
            registry=r,
        )
        self.relay_leader = Gauge(
            "taskhub_relay_leader",
            "1 while this process leads the outbox relay.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.worker_messages = Counter(
            "taskhub_worker_messages",
            "Messages a worker finished, by consumer and outcome (handled, duplicate, retried, dead_lettered).",
            ["consumer", "outcome"],
            registry=r,
        )
        self.worker_handler_duration = Histogram(
            "taskhub_worker_handler_duration_seconds",
            "Time to apply one event (handler and its unit of work), by consumer.",
            ["consumer"],
            buckets=HANDLER_BUCKETS,
            registry=r,
        )
        self.dlq_messages = Gauge(
            "taskhub_dlq_messages",
            "Messages waiting in a dead-letter queue, by consumer (read from the broker).",
            ["consumer"],
            registry=r,
            multiprocess_mode="livemax",
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration (``route``: the template, or :data:`UNMATCHED`)."""
        children = _http_children(self, method if method in KNOWN_METHODS else "other", route, status)
        children[0].inc()
        children[1].observe(seconds)


@functools.cache
def metrics() -> Metrics:
    """The process's :class:`Metrics` (created on first use: importing this module writes nothing).

    The ``*_created`` series (a timestamp per counter) are turned off: nothing here reads them and
    they double the size of every scrape.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return Metrics()


@functools.lru_cache(maxsize=4096)
def _http_children(m: Metrics, method: str, route: str, status: int) -> tuple[Any, Any]:
    # .labels() validates and locks on every call (~1.5 us each); the label sets are bounded
    # (method x route template x status), so their children are looked up once and kept.
    return m.http_requests.labels(method, route, str(status)), m.http_duration.labels(method, route)


# ----------------------------------------------------------------------------------------- exposition


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The text exposition of this process (or of every process in multiprocess mode), plus
    ``extra`` families computed for this scrape (the outbox backlog)."""
    path = multiprocess_dir()
    if path is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    families = list(extra)
    if families:
        scrape = CollectorRegistry()
        scrape.register(_Fixed(families))
        body += generate_latest(scrape)
    return body


@dataclass(eq=False)
class _Fixed:
    """A collector that yields families computed before the scrape."""

    families: list[Metric]

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def prepare_directory(path: str) -> None:
    """Create ``path`` or empty it of another run's files (stale files would add old counts)."""
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


_LIVE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def forget_dead_processes(path: str) -> list[int]:
    """Remove the live-gauge files of processes that are gone (a worker that crashed never said
    goodbye: its in-flight requests and pool connections must not stay counted). Returns their pids."""
    dead: set[int] = set()
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:  # alive, someone else's
            continue
    for pid in dead:
        forget_process(pid, path)
    return sorted(dead)


def forget_process(pid: int, path: str) -> None:
    """Remove the live-gauge files of process ``pid`` (it exited, or is about to)."""
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


# ----------------------------------------------------------------------------------------- samplers


@dataclass
class Sampler:
    """Copies values that cost nothing to keep into the metrics: pool occupancy per engine, cache
    hit/miss counts (as counter increments since the last sample), CPU and memory of the process.

    Args:
        db: the process's :class:`~taskhub.db.session.Database` (None in a process without one).
        caches: ``{"response": cache, "auth": auth_cache}``: objects with ``hits`` and ``misses``.
    """

    db: Database | None = None
    caches: dict[str, Any] = field(default_factory=dict)
    m: Metrics = field(default_factory=metrics)
    _seen: dict[tuple[str, str], int] = field(default_factory=dict)
    _cpu_seen: float = 0.0

    def __post_init__(self) -> None:
        self.m.cpu_limit.set(cpu_limit_cores())
        limit = memory_limit_bytes()
        if limit is not None:
            self.m.memory_limit.set(limit)

    def sample(self) -> None:
        """Take one sample now (cheap: no I/O but ``/proc/self/statm``)."""
        if self.db is not None:
            for name, pool in pools(self.db):
                self.m.db_pool_size.labels(name).set(_call(pool, "size"))
                self.m.db_pool_checked_out.labels(name).set(_call(pool, "checkedout"))
                self.m.db_pool_overflow.labels(name).set(max(0, _call(pool, "overflow")))
        for cache_name, cache in self.caches.items():
            for result, attribute in (("hit", "hits"), ("miss", "misses")):
                value = int(getattr(cache, attribute, 0))
                key = (cache_name, result)
                delta = value - self._seen.get(key, 0)
                self._seen[key] = value
                if delta > 0:
                    self.m.cache_requests.labels(cache_name, result).inc(delta)
                else:
                    self.m.cache_requests.labels(cache_name, result).inc(0)  # expose zeros too
        cpu = time.process_time()
        if cpu > self._cpu_seen:
            self.m.process_cpu.inc(cpu - self._cpu_seen)
        self._cpu_seen = cpu
        rss = resident_memory_bytes()
        if rss is not None:
            self.m.process_memory.set(rss)

    async def run(self, interval: float = SAMPLE_INTERVAL) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            with contextlib.suppress(Exception):  # a sample must never take the process down
                self.sample()
            await asyncio.sleep(interval)


def _call(pool: Pool, name: str) -> int:
    method = getattr(pool, name, None)
    return int(method()) if callable(method) else 0


def pools(db: Database) -> list[tuple[str, Pool]]:
    """``(engine label, pool)`` of each distinct pool: ``primary``, then ``replica1``.. (read
    replicas) or ``reader`` (SQLite's separate read pool); a reader sharing the primary's pool
    (PostgreSQL without replicas) is not listed twice."""
    primary_reader, *replicas = db.readers
    engines: list[tuple[str, AsyncEngine]] = [("primary", db.primary), ("reader", primary_reader)]
    engines.extend((f"replica{i}", e) for i, e in enumerate(replicas, start=1))
    seen: set[int] = set()
    result: list[tuple[str, Pool]] = []
    for name, engine in engines:
        pool = engine.sync_engine.pool
        if id(pool) not in seen:
            seen.add(id(pool))
            result.append((name, pool))
    return result


def resident_memory_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def cpu_limit_cores() -> float:
    """The cgroup v2 CPU quota (``cpu.max``) in cores, else the CPUs this process may run on."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    return float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def memory_limit_bytes() -> int | None:
    """The cgroup v2 memory limit (``memory.max``), else the machine's memory; None if unknown."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            value = f.read().strip()
        if value != "max":
            return int(value)
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError):
        return None
