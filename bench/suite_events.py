"""``--events`` (issue 11): the event pipeline outbox -> relay -> RabbitMQ -> worker, and live streams.

Measured against real services: the machine's PostgreSQL (a fresh database), RabbitMQ (an exchange
and queue prefix of this run, ``bench.<tag>``, deleted at the end) and Redis (``--redis-url``; the
live streams' fan-out). Every round runs, one server alive at a time:

1. **A, relay delivering**: ``taskhub serve`` with its relay on (leader) and the broker, plus one
   ``taskhub worker`` process. wrk ``create`` (server CPU per request, relay included), then wrk
   ``mixed`` while SSE clients hold ``/api/v1/events/stream`` for some users: latency from the
   event's ``occurred_at`` to the worker's ``processed_events.processed_at`` (per consumer) and to
   the moment an SSE client read the frame.
2. **B, relay off** (``TASKHUB_RELAY_ENABLED=false``): the same ``create`` run; its events stay in
   the outbox. A vs B is the cost of delivering events on the server (the outbox row itself is
   written in both: there is no switch for it, by design).
3. **Drain**: a ``taskhub relay`` process is started against B's backlog while the worker runs:
   events per second published (confirmed and marked) and applied by the worker, and the CPU of
   both processes per event.

Then, without HTTP: the database-side cost of the outbox row on ``create`` — the repository's
statement (a data-modifying CTE inserting the task and its outbox row) against the same statement
without the outbox part, interleaved, on one connection: the PostgreSQL backend's CPU per statement
(from ``/proc`` when PostgreSQL runs on this host), wall time per committed statement, and
``EXPLAIN (ANALYZE, WAL)`` (execution time, WAL bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy import event

from bench import seed
from bench.common import Options, base_env, console, measure, server, warm_up
from bench.loadgen import Result
from bench.report import table
from bench.server import BIN, ServerSpec

AMQP_URL = os.environ.get("BENCH_AMQP_URL", os.environ.get("TASKHUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
CONSUMERS = ("notifications", "analytics")
SSE_USERS = 10  # users whose live stream a client holds during the mixed runs
RELAY_PLACES = ("relay in serve", "relay process")


def _stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99), "max": max(values, default=float("nan"))}


def latency_round(srv: Any, dsn: str, tokens: list[str], users_file: Path, opts: Options, mixed: Result,
                  out: dict[str, list[dict[str, float]]]) -> None:
    """One wrk ``mixed`` run with SSE clients and the probe; appends this round's latency stats to
    ``out[path]`` (seconds): from ``occurred_at`` (upper bound of commit-to-X, every event) and from
    the probe's 201 arrival (lower bound, the probe's own creates)."""
    with SseClients(srv.url, tokens) as sse:
        t0 = datetime.now(UTC)
        res = measure(srv, "mixed", "mixed", users_file, opts, repeats=1)
        t1 = datetime.now(UTC)
        mixed.runs += res.runs
        time.sleep(3.0)  # let the last events arrive
        received = list(sse.received)
        answered = dict(sse.probe_answered)
    window = [x for x in received if t0.timestamp() <= x[3] < t1.timestamp()]
    per = latencies(dsn, t0, t1)
    rows = sql(dsn, "SELECT o.aggregate_id::text AS task, p.consumer, EXTRACT(EPOCH FROM p.processed_at)::float8 AS t "
                    "FROM outbox o JOIN processed_events p ON p.event_id = o.event_id "
                    "WHERE o.type = 'task.created' AND o.aggregate_id = ANY($1::uuid[])", list(answered))
    stats = {c: _stats(per[c]) for c in CONSUMERS}
    stats["sse"] = _stats([now - occ for _, _, _, occ, now in window])
    for c in CONSUMERS:
        stats[f"{c} (from 201)"] = _stats([r["t"] - answered[r["task"]] for r in rows if r["consumer"] == c])
    stats["sse (from 201)"] = _stats([now - answered[task] for _, typ, task, _, now in received
                                      if typ == "task.created" and task in answered])
    for k, v in stats.items():
        out.setdefault(k, []).append(v)
    console.log("  latency: " + ", ".join(f"{k} n={v['n']} p50 {1000 * v['p50']:.0f} p99 {1000 * v['p99']:.0f} ms"
                                          for k, v in stats.items()))


class Proc:
    """A ``taskhub <command>`` subprocess (worker, relay) in its own session, with its CPU time."""

    def __init__(self, command: str, env: dict[str, str], workdir: Path, tag: str) -> None:
        self.log_path = workdir / f"{tag}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(BIN / "taskhub"), command], cwd=workdir, env={**os.environ, **env},
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args} exited with {self.proc.returncode}; see {self.log_path}")
            if text in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"no {text!r} in {self.log_path} after {timeout}s")

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until the process used under 20 ms of CPU in a second (its start-up is over)."""
        deadline = time.monotonic() + timeout
        last = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.cpu_seconds()
            if now - last < 0.02:
                return
            last = now

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=5)
        self._log.close()


class SseClients:
    """Holds ``/api/v1/events/stream`` for some users on a thread of its own; records, per event,
    the wall-clock time its frame was read."""

    def __init__(self, url: str, tokens: list[str], probe_interval: float = 0.25) -> None:
        self.url = url
        self.tokens = tokens
        # (event_id, type, task_id, occurred_at epoch, received epoch)
        self.received: list[tuple[str, str, str, float, float]] = []
        # the probe: tasks created by this client every probe_interval s for the first user, and the
        # time each 201 arrived (the commit happened before it: a lower bound for commit-to-X)
        self.probe_interval = probe_interval
        self.probe_answered: dict[str, float] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: list[asyncio.Future[None]] = []
        self.connected = 0

    def __enter__(self) -> SseClients:
        self._thread.start()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10))
        self._tasks = [asyncio.run_coroutine_threadsafe(self._read(t), self._loop) for t in self.tokens]
        deadline = time.monotonic() + 15
        while self.connected < len(self.tokens) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.connected < len(self.tokens):
            raise RuntimeError(f"only {self.connected} of {len(self.tokens)} SSE streams opened")
        self._tasks.append(asyncio.run_coroutine_threadsafe(self._probe(self.tokens[0]), self._loop))
        return self

    async def _probe(self, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        n = 0
        while True:
            n += 1
            response = await self._client.post(self.url + "/api/v1/tasks", json={"title": f"probe {n}"},
                                               headers=headers)
            if response.status_code == 201:
                self.probe_answered[response.json()["id"]] = time.time()
            await asyncio.sleep(self.probe_interval)

    async def _read(self, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        async with self._client.stream("GET", self.url + "/api/v1/events/stream", headers=headers) as response:
            if response.status_code != 200:
                raise RuntimeError(f"SSE answered {response.status_code}")
            self.connected += 1
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    now = time.time()
                    event = orjson.loads(line[6:])
                    occurred = datetime.fromisoformat(event["occurred_at"]).timestamp()
                    self.received.append((event["event_id"], event["type"], event["task_id"], occurred, now))

    def __exit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def _sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(_sql(dsn, query, *args))


def wait_until(check: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


async def delete_broker_names(exchange: str, prefix: str, retries: int) -> None:
    import aio_pika

    conn = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await conn.channel()
        for c in CONSUMERS:
            for suffix in ("", ".dlq", *(f".retry.{i}" for i in range(1, retries + 1))):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(f"{prefix}.{c}{suffix}")
                if channel.is_closed:
                    channel = await conn.channel()
        with contextlib.suppress(Exception):
            await channel.exchange_delete(exchange)
    finally:
        await conn.close()


@contextlib.contextmanager
def worker_process(env: dict[str, str], opts: Options) -> Iterator[Proc]:
    proc = Proc("worker", env, opts.workdir, "events-worker")
    try:
        proc.wait_for("worker consuming")
        yield proc
    finally:
        proc.stop()


class RelayLockHolder:
    """Holds the relay's leader lock (``taskhub.events.relay.ADVISORY_LOCK_KEY``) on a connection
    of its own, on a thread of its own, until :meth:`release`: relays stand by meanwhile."""

    def __init__(self, dsn: str) -> None:
        self._release = threading.Event()
        self._held = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._hold(dsn)), daemon=True)
        self._thread.start()
        if not self._held.wait(30):
            raise RuntimeError(f"could not take the relay lock: {self.error!r}")

    async def _hold(self, dsn: str) -> None:
        from taskhub.events.relay import ADVISORY_LOCK_KEY

        try:
            conn = await asyncpg.connect(dsn)
        except BaseException as exc:
            self.error = exc
            return
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY):
                self._held.set()
                while not self._release.is_set():  # noqa: ASYNC110 - set from another thread
                    await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def latencies(dsn: str, t0: datetime, t1: datetime) -> dict[str, list[float]]:
    """Seconds from each event's occurred_at to its processed_events record, per consumer, for
    events that occurred in [t0, t1)."""
    rows = sql(dsn, "SELECT p.consumer, EXTRACT(EPOCH FROM p.processed_at - o.created_at)::float8 AS s "
                    "FROM processed_events p JOIN outbox o ON o.event_id = p.event_id "
                    "WHERE o.created_at >= $1 AND o.created_at < $2", t0, t1)
    out: dict[str, list[float]] = {c: [] for c in CONSUMERS}
    for r in rows:
        out.setdefault(r["consumer"], []).append(float(r["s"]))
    return out


def db_side_cost(dsn: str, owner_id: uuid.UUID, rounds: int, per_block: int) -> dict[str, Any]:
    """The repository's create statement with and without its outbox part (see module docstring)."""
    return asyncio.run(_db_side_cost(dsn, owner_id, rounds, per_block))


def _statements(owner_id: uuid.UUID) -> dict[str, tuple[str, Any]]:
    from sqlalchemy import Table, insert

    from taskhub.core.timeutil import new_id, utcnow
    from taskhub.events.models import OutboxEvent
    from taskhub.events.outbox import event_values
    from taskhub.tasks.models import Task

    tasks, outbox = Task.__table__, OutboxEvent.__table__
    assert isinstance(tasks, Table) and isinstance(outbox, Table)

    def make(with_outbox: bool) -> Any:
        now = utcnow()
        task = {"id": new_id(), "owner_id": owner_id, "title": "bench task", "description": "created by wrk",
                "status": "todo", "priority": "medium", "priority_rank": 2, "due_date": None,
                "tags": ["bench", "report"], "completed_at": None, "created_at": now, "updated_at": now,
                "version": 1}
        insert_task = insert(tasks).values(task)
        if not with_outbox:
            return insert_task
        event = event_values(type="task.created", aggregate_id=task["id"], owner_id=owner_id, version=1,
                             changes={"title": [None, "bench task"]}, occurred_at=now)
        # the same statement shape as tasks.repository.insert_with_event on PostgreSQL
        return insert(outbox).values(event).add_cte(insert_task.cte("new_task"))

    return {"task only": (make(False), None), "task + outbox row (CTE)": (make(True), None)}


def _wal_bytes(node: dict[str, Any]) -> int:
    """WAL bytes of every ModifyTable node in a plan: a node's figure leaves out a data-modifying
    CTE below it (run as an InitPlan), so they are summed (the outbox INSERT alone shows the
    same 7 records the CTE's top node shows)."""
    own = int(node.get("WAL Bytes", 0)) if node.get("Node Type") == "ModifyTable" else 0
    return own + sum(_wal_bytes(child) for child in node.get("Plans", []))


async def _db_side_cost(dsn: str, owner_id: uuid.UUID, rounds: int, per_block: int) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    url = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    engine = create_async_engine(url, json_serializer=lambda v: orjson.dumps(v).decode())
    variants = ("task only", "task + outbox row (CTE)")
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    explain: dict[str, list[tuple[float, int]]] = {v: [] for v in variants}
    backend_proc = True
    try:
        async with engine.connect() as conn:
            pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar()
            await conn.commit()

            def backend_cpu() -> float | None:
                # schedstat: nanoseconds on a CPU (/proc/<pid>/stat counts 10 ms ticks: too coarse here)
                try:
                    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
                except (OSError, IndexError, ValueError):
                    return None

            backend_proc = backend_cpu() is not None
            for r in range(rounds):
                for v in (variants if r % 2 == 0 else variants[::-1]):
                    c0, w0 = backend_cpu(), time.perf_counter()
                    for _ in range(per_block):
                        stmt = _statements(owner_id)[v][0]
                        await conn.execute(stmt)
                        await conn.commit()
                    w1, c1 = time.perf_counter(), backend_cpu()
                    wall[v].append((w1 - w0) / per_block * 1000)
                    if c0 is not None and c1 is not None:
                        cpu[v].append((c1 - c0) / per_block * 1000)
            # EXPLAIN the exact SQL and driver parameters the statement is sent with (caught on
            # its way to the driver, then rolled back, so the explained run inserts the same rows)
            captured: dict[str, Any] = {}

            def grab(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
                captured["sql"], captured["params"] = statement, parameters

            event.listen(engine.sync_engine, "before_cursor_execute", grab)
            for _ in range(20):
                for v in variants:
                    await conn.execute(_statements(owner_id)[v][0])
                    await conn.rollback()
                    sql_text, params = captured["sql"], captured["params"]
                    plan = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, WAL, FORMAT JSON) " + sql_text,
                                                       params)).scalar()
                    await conn.rollback()
                    top = (orjson.loads(plan) if isinstance(plan, str | bytes) else plan)[0]
                    explain[v].append((float(top["Execution Time"]), _wal_bytes(top["Plan"])))
    finally:
        await engine.dispose()
    return {
        "cpu_ms": {v: statistics.median(x) for v, x in cpu.items() if x},
        "wall_ms": {v: statistics.median(x) for v, x in wall.items()},
        "explain_ms": {v: statistics.median(e[0] for e in explain[v]) for v in variants},
        "wal_bytes": {v: statistics.median(e[1] for e in explain[v]) for v in variants},
        "backend_cpu_visible": backend_proc,
        "blocks": rounds, "per_block": per_block,
    }


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    """Run the suite; returns (markdown, raw data)."""
    from bench.suite_main import seed_db

    tag = f"bench.{secrets.token_hex(4)}"
    exchange, prefix = f"{tag}.events", tag
    retries = 3
    pg_url, users_file = asyncio.run(seed_db(opts, "postgresql"))
    dsn = seed.asyncpg_dsn(pg_url)
    # the seeding's own events are not part of any measurement
    sql(dsn, "DELETE FROM outbox")
    tokens = [ln.split("\t", 1)[0] for ln in users_file.read_text().splitlines() if ln][:SSE_USERS]
    owner = sql(dsn, "SELECT id FROM users ORDER BY email LIMIT 1")[0]["id"]

    env = {**base_env(opts, pg_url), "TASKHUB_BROKER_URL": AMQP_URL, "TASKHUB_BROKER_EXCHANGE": exchange,
           "TASKHUB_BROKER_QUEUE_PREFIX": prefix, "TASKHUB_REDIS_URL": opts.redis_url,
           "TASKHUB_METRICS_PORT": "0", "TASKHUB_WORKER_RETRY_DELAYS": "1,10,60",
           # the access-log line of every request and the worker's line per event are not what is measured
           "TASKHUB_ACCESS_LOG": "false", "TASKHUB_LOG_LEVEL": "WARNING"}
    spec = ServerSpec(stack=opts.stack, workers=opts.workers)
    env_b = {**env, "TASKHUB_RELAY_ENABLED": "false"}
    cost_a = Result("create, relay delivering", opts.connections)
    cost_b = Result("create, relay off", opts.connections)
    mixed = {c: Result(f"mixed, {c}", opts.connections) for c in RELAY_PLACES}
    worker_cpu_per_create: list[float] = []
    lat: dict[str, dict[str, list[dict[str, float]]]] = {c: {} for c in RELAY_PLACES}
    drains: list[dict[str, float]] = []

    def unsent() -> int:
        return int(sql(dsn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"])

    def processed() -> int:
        return int(sql(dsn, "SELECT count(*) AS n FROM processed_events")[0]["n"])

    try:
        with worker_process(env, opts) as worker:
            for r in range(opts.repeats):
                console.rule(f"events round {r + 1}/{opts.repeats}: A (relay delivering)")
                with server(opts, spec, env, "events-a") as srv:
                    warm_up(srv, users_file)
                    w0 = worker.cpu_seconds()
                    res = measure(srv, "create", "create", users_file, opts, repeats=1)
                    cost_a.runs += res.runs
                    wait_until(lambda: unsent() == 0, 30)
                    total = int(sql(dsn, "SELECT count(*) AS n FROM outbox")[0]["n"])
                    wait_until(lambda: processed() >= len(CONSUMERS) * total, 60)  # noqa: B023
                    worker_cpu_per_create.append(1000 * (worker.cpu_seconds() - w0) / max(1, res.runs[-1].requests))
                    latency_round(srv, dsn, tokens, users_file, opts, mixed["relay in serve"], lat["relay in serve"])
                wait_until(lambda: unsent() == 0, 30)
                console.rule(f"events round {r + 1}/{opts.repeats}: A2 (relay in a process of its own)")
                relay = Proc("relay", {**env, "TASKHUB_RELAY_ENABLED": "true"}, opts.workdir, "events-relay-a2")
                try:
                    with server(opts, spec, env_b, "events-a2") as srv:
                        warm_up(srv, users_file)
                        latency_round(srv, dsn, tokens, users_file, opts, mixed["relay process"],
                                      lat["relay process"])
                finally:
                    relay.stop()
                wait_until(lambda: unsent() == 0, 30)
                console.rule(f"events round {r + 1}/{opts.repeats}: B (relay off)")
                before = sql(dsn, "SELECT coalesce(max(id), 0) AS m FROM outbox")[0]["m"]
                with server(opts, spec, env_b, "events-b") as srv:
                    warm_up(srv, users_file)
                    res = measure(srv, "create", "create", users_file, opts, repeats=1)
                    cost_b.runs += res.runs
                backlog = int(sql(dsn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND id > $1",
                                  before)[0]["n"])
                console.rule(f"events round {r + 1}/{opts.repeats}: drain {backlog:,} events (taskhub relay)")
                processed0 = processed()
                # The relay process's start-up (imports, connections: about a second of CPU) is not
                # per-event work: the bench holds the relay's leader lock until the process has
                # started and stands by, takes its CPU time then, and lets go.
                holder = RelayLockHolder(dsn)
                relay = Proc("relay", {**env, "TASKHUB_RELAY_ENABLED": "true"}, opts.workdir, "events-relay")
                try:
                    relay.wait_idle()
                    r0, w0 = relay.cpu_seconds(), worker.cpu_seconds()
                    holder.release()
                    done = wait_until(lambda: processed() >= processed0 + len(CONSUMERS) * backlog,  # noqa: B023
                                      300, 0.5)
                    time.sleep(0.5)
                    relay_cpu, worker_cpu = relay.cpu_seconds() - r0, worker.cpu_seconds() - w0
                finally:
                    holder.release()
                    relay.stop()
                row = sql(dsn, "SELECT EXTRACT(EPOCH FROM max(o.sent_at) - min(o.sent_at))::float8 AS relay_s, "
                               "count(DISTINCT o.sent_at) AS batches, "
                               "EXTRACT(EPOCH FROM max(p.processed_at) - min(o.sent_at))::float8 AS e2e_s, "
                               "EXTRACT(EPOCH FROM max(p.processed_at) - min(p.processed_at))::float8 AS worker_s "
                               "FROM outbox o JOIN processed_events p ON p.event_id = o.event_id WHERE o.id > $1",
                          before)[0]
                batches = max(1, int(row["batches"]))
                # the first batch's publish precedes min(sent_at): add one batch interval to the windows
                batch_s = (row["relay_s"] or 0.0) / max(1, batches - 1)
                d = {"events": backlog, "complete": float(done), "batches": batches,
                     "relay_eps": backlog / ((row["relay_s"] or 0.0) + batch_s) if batches > 1 else float("nan"),
                     "worker_eps": backlog / (row["worker_s"] or 1e-9),
                     "e2e_eps": backlog / ((row["e2e_s"] or 0.0) + batch_s) if batches > 1 else float("nan"),
                     "relay_cpu_ms": 1000 * relay_cpu / max(1, backlog),
                     "worker_cpu_ms": 1000 * worker_cpu / max(1, backlog)}
                drains.append(d)
                console.log(f"  drain: {backlog} events, relay {d['relay_eps']:,.0f}/s, "
                            f"worker {d['worker_eps']:,.0f}/s, "
                            f"end to end {d['e2e_eps']:,.0f}/s; CPU per event relay {d['relay_cpu_ms']:.2f} ms, "
                            f"worker {d['worker_cpu_ms']:.2f} ms (both consumers)")
        console.rule("database side: the outbox row in the create statement")
        dbc = db_side_cost(dsn, owner, rounds=6 if not opts.quick else 2, per_block=1000 if not opts.quick else 30)
    finally:
        asyncio.run(delete_broker_names(exchange, prefix, retries))

    raw = {"cost_a": cost_a.to_dict(), "cost_b": cost_b.to_dict(), "mixed": {c: m.to_dict() for c, m in mixed.items()},
           "latency": lat,
           "worker_cpu_per_create_ms": worker_cpu_per_create, "drains": drains, "db_side": dbc}
    return render(opts, raw, cost_a, cost_b, mixed), raw


def _med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def render(opts: Options, raw: dict[str, Any], a: Result, b: Result, mixed: dict[str, Result]) -> str:
    """The suite's markdown."""
    md = [f"Services: the machine's PostgreSQL (fresh database), RabbitMQ (`{AMQP_URL.split('@')[-1]}`, an "
          "exchange and queues of this run), Redis (live-stream fan-out). One `taskhub serve` "
          f"({opts.workers} worker), one `taskhub worker` (prefetch 32, concurrency 8); access log off. "
          f"wrk 2 threads, {opts.connections} connections, {opts.duration:g} s per run, {opts.repeats} rounds "
          f"(A and B interleaved in every round), medians over rounds; {opts.users} users x "
          f"{opts.tasks_per_user} tasks.\n"]
    drains = raw["drains"]
    md.append("### Throughput: outbox -> relay -> RabbitMQ -> worker (draining a backlog)\n")
    md.append("The backlog is what round B's `create` run left in the outbox; one `taskhub relay` process "
              "(batches of 200, publisher confirms) and one `taskhub worker` (both consumers: notifications "
              "and analytics; one handler run + processed-event record per consumer per event). Rates from "
              "the database's own timestamps (`outbox.sent_at` per confirmed batch, "
              "`processed_events.processed_at`).\n")
    rows: list[list[object]] = [
        [i + 1, f"{d['events']:,}", f"{d['relay_eps']:,.0f}", f"{d['worker_eps']:,.0f}", f"{d['e2e_eps']:,.0f}",
         f"{d['relay_cpu_ms']:.2f}", f"{d['worker_cpu_ms']:.2f}", "yes" if d["complete"] else "NO"]
        for i, d in enumerate(drains)]
    rows.append(["median", f"{_med([d['events'] for d in drains]):,.0f}",
                 *[f"{_med([d[k] for d in drains]):,.0f}" for k in ("relay_eps", "worker_eps", "e2e_eps")],
                 *[f"{_med([d[k] for d in drains]):.2f}" for k in ("relay_cpu_ms", "worker_cpu_ms")], ""])
    md.append(table(["round", "events", "relay: published + marked /s", "worker: events applied /s (both consumers)",
                     "end to end events/s", "relay CPU ms/event", "worker CPU ms/event", "all applied"], rows) + "\n")
    lat = raw["latency"]
    md.append("### Latency under `mixed` (worker process, SSE clients)\n")
    md.append("Commit time itself is not recorded by PostgreSQL here (`track_commit_timestamp` is off), so each "
              "path is bracketed: **upper bound** from the event's `occurred_at` (taken in the write's "
              "transaction before its INSERT and COMMIT, so it includes the rest of that request under load; "
              "every event of the run), **lower bound** from the moment the 201 of a probe create reached the "
              f"client (after the commit; one probe create every 0.25 s for one of the {SSE_USERS} users whose stream "
              "is held). Handler = the worker's processed-event record of that consumer (`processed_at`, taken "
              "when the handler's unit of work starts); SSE = the moment the client read the frame "
              "(`/api/v1/events/stream`, Redis pub/sub fan-out). Two placements of the relay, same round: inside "
              "`serve` (the default: it shares the saturated event loop with the requests) and a `taskhub relay` "
              f"process beside a `serve` with `TASKHUB_RELAY_ENABLED=false`. wrk saturates the server "
              f"({opts.connections} connections): this is latency at full load.\n")
    lrows = []
    for place in RELAY_PLACES:
        for key, label in (("notifications", "commit -> handler (notifications)"),
                           ("analytics", "commit -> handler (analytics)"), ("sse", "commit -> SSE client")):
            up, low = lat[place].get(key, []), lat[place].get(f"{key} (from 201)", [])
            lrows.append([place, label,
                          f"{1000 * _med([r['p50'] for r in low]):.0f} - {1000 * _med([r['p50'] for r in up]):.0f}",
                          f"{1000 * _med([r['p99'] for r in low]):.0f} - {1000 * _med([r['p99'] for r in up]):.0f}",
                          f"{sum(r['n'] for r in low):,} / {sum(r['n'] for r in up):,}",
                          " / ".join(f"{1000 * r['p50']:.0f}" for r in up)])
    md.append(table(["relay", "path", "p50 ms (lower - upper bound)", "p99 ms (lower - upper bound)",
                     "events (probe / all)", "upper-bound p50 per round"], lrows) + "\n")
    md.append("`mixed` itself in those runs: " + "; ".join(
        f"{place}: {m.rps:,.0f} req/s, p95 {m.p95:.0f} ms, server CPU {m.cpu_ms:.2f} ms/req, codes {m.codes}"
        for place, m in mixed.items()) + ".\n")
    md.append("### Cost of the outbox on `create`\n")
    ratio = a.cpu_ms / b.cpu_ms if b.cpu_ms else float("nan")
    wc = _med(raw["worker_cpu_per_create_ms"])
    md.append(table(["run", "req/s", "p95 ms", "server CPU ms/req", "per round CPU ms/req", "codes"], [
        [r.name, f"{r.rps:,.0f}", f"{r.p95:.0f}", f"{r.cpu_ms:.2f}",
         " / ".join(f"{x.cpu_ms_per_req:.2f}" for x in r.runs), r.codes] for r in (a, b)]) + "\n")
    md.append(f"Delivering costs the server {a.cpu_ms - b.cpu_ms:+.2f} ms CPU per create ({100 * (ratio - 1):+.0f}%; "
              "the relay runs in the server process: poll, publish with confirms, mark, Redis fan-out), and "
              f"the worker process {wc:.2f} ms CPU per create (two consumers' handlers; outside the server).\n")
    dbc = raw["db_side"]
    variants = list(dbc["wall_ms"])
    drow = [[v, f"{dbc['cpu_ms'].get(v, float('nan')):.3f}", f"{dbc['wall_ms'][v]:.3f}", f"{dbc['explain_ms'][v]:.3f}",
             f"{dbc['wal_bytes'][v]:,.0f}"] for v in variants]
    md.append("Database side: the repository's statement shape (`tasks.repository.insert_with_event`: the task "
              "INSERT as a data-modifying CTE feeding the outbox INSERT) against the task INSERT alone, "
              f"on one connection, each committed; {dbc['blocks']} interleaved blocks of {dbc['per_block']} per "
              "variant, medians of the blocks; EXPLAIN (ANALYZE, WAL) rolled back, median of 20. Backend CPU "
              "is the PostgreSQL backend process's on-CPU time (`/proc/<pid>/schedstat`)"
              + ("" if dbc["backend_cpu_visible"] else " (not visible here: PostgreSQL is not on this host)") + ".\n")
    md.append(table(["statement", "backend CPU ms/stmt (incl. commit)", "wall ms/stmt (incl. commit)",
                     "EXPLAIN execution ms", "WAL bytes"], drow) + "\n")
    return "\n".join(md)
