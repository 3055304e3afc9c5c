"""The fleet (deploy/fleet/fleet.py) under faults, each under a steady mixed load through nginx.

One fleet for the module: nginx, 3 API instances, 2 workers, the relay, a database of its own on
the machine's PostgreSQL (faster to start than the Patroni cluster, which `make fleet` uses), a
redis-server of the module's own (so it may be stopped) and RabbitMQ behind a TCP proxy the
module owns (so it may be cut). No Prometheus. Loopback traffic only.

The load: one thread per user, each cycling create / list / read / update; every POST carries an
``Idempotency-Key``, and a 502 or 503 is retried once (the same key). Each fault gives a row:
requests sent, failed (not 2xx after the one retry), duplicated (a key that made two tasks, or
an event applied twice), events lost (published events some consumer never applied) — all zero —
and how many requests the client had to retry (what nginx could not hide).
The rows go to test-output/fleet-faults.md. The whole module takes about 4 minutes, most of it
the Redis (30 s) and RabbitMQ (60 s) outages the issue prescribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL
from tests.events.conftest import AMQP_URL, CONSUMERS, TcpProxy
from tests.fleet import FLEET_SCRIPT
from tests.integration.conftest import OwnRedis
from tests.servers import TASKHUB, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-output" / "fleet-faults.md"
USERS = 4
PASSWORD = "fleet passphrase for the load"
ROWS: list[tuple[str, int, int, int, int, int]] = []


# --------------------------------------------------------------------------------- the fleet


class Loop:
    """An event loop in a thread of its own, for the asyncio TCP proxy while the tests block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@dataclass
class Fleet:
    """The running fleet: its gateway URL, status (ports, PIDs), and the parts a test may break."""

    env: dict[str, str]
    url: str
    redis: OwnRedis
    amqp: TcpProxy
    loop: Loop
    users: list[dict[str, str]] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, str(FLEET_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.run("status")))

    @property
    def database_url(self) -> str:
        return str(self.status()["database_url"])

    def pid(self, name: str) -> int:
        pid = self.status()["pids"][name]
        assert isinstance(pid, int), f"{name} is not running"
        return pid

    def access_log(self) -> list[str]:
        return (Path(self.env["TASKHUB_FLEET_DIR"]) / "logs" / "nginx-access.log").read_text().splitlines()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sql(url: str, query: str) -> list[Any]:
    async def go() -> list[Any]:
        conn = await asyncpg.connect(_dsn(url), timeout=10)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    return asyncio.run(go())


async def _delete_broker_names(exchange: str, prefix: str) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    channel = await connection.channel()
    for consumer in CONSUMERS:
        for suffix in ("", ".dlq", ".retry.1", ".retry.2", ".retry.3"):
            with contextlib.suppress(Exception):
                await channel.queue_delete(f"{prefix}.{consumer}{suffix}")
            if channel.is_closed:
                channel = await connection.channel()
    with contextlib.suppress(Exception):
        await channel.exchange_delete(exchange)
    await connection.close()


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    loop = Loop()
    parts = urlsplit(AMQP_URL)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    loop.run(proxy.start())
    redis = OwnRedis(free_port())
    redis.start()
    run_dir = tempfile.mkdtemp(prefix="taskhub-fleet-faults-")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_")},
        "TASKHUB_FLEET_DIR": run_dir,
        "TASKHUB_FLEET_PORT": "0",
        "TASKHUB_FLEET_DATABASE": "local",
        "TASKHUB_FLEET_PG_URL": make_url(PG_URL).set(database="postgres").render_as_string(hide_password=False),
        "TASKHUB_FLEET_REDIS_URL": redis.url,
        "TASKHUB_FLEET_AMQP_URL": proxy.url(AMQP_URL),
        "TASKHUB_FLEET_PROMETHEUS": "0",
        "TASKHUB_FLEET_TASKHUB": TASKHUB,
        "TASKHUB_ARGON2_MEMORY_COST": "1024",
        "TASKHUB_ARGON2_TIME_COST": "1",
        "TASKHUB_RATE_LIMIT_AUTH": "100 per minute",
        "TASKHUB_WORKER_RETRY_DELAYS": "0.5,1,2",
        "TASKHUB_LOG_LEVEL": "INFO",
        "TASKHUB_SSE_HEARTBEAT": "2",  # the stream reader notices a stop within 2 s
    }
    gateway = ""
    try:
        gateway = subprocess.run(
            [sys.executable, str(FLEET_SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=180, check=False
        ).stdout.strip()
        assert gateway.startswith("http://127.0.0.1:"), (Path(run_dir) / "logs").exists() and sorted(
            (Path(run_dir) / "logs").iterdir()
        )
        again = subprocess.run(
            [sys.executable, str(FLEET_SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert (again.returncode, again.stdout.strip()) == (0, gateway)  # idempotent: nothing new started
        assert "started" not in again.stderr
        f = Fleet(env, gateway, redis, proxy, loop)
        with httpx.Client(base_url=gateway, timeout=15) as c:
            for i in range(USERS):
                email = f"load{i}@example.com"
                assert (
                    c.post(
                        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "L"}
                    ).status_code
                    == 201
                )
                token = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
                f.users.append({"Authorization": f"Bearer {token}"})
        yield f
    finally:
        status = json.loads(
            subprocess.run(
                [sys.executable, str(FLEET_SCRIPT), "status"], env=env, capture_output=True, text=True, check=False
            ).stdout
            or "{}"
        )
        subprocess.run(
            [sys.executable, str(FLEET_SCRIPT), "down"], env=env, capture_output=True, timeout=180, check=False
        )
        if broker := status.get("broker"):
            asyncio.run(_delete_broker_names(broker["exchange"], broker["queue_prefix"]))
        redis.stop()
        loop.run(proxy.cut())
        loop.close()
        RESULTS.parent.mkdir(exist_ok=True)
        lines = [
            "| fault | requests sent | failed | duplicated | events lost | retried by the client |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {' | '.join(str(v) for v in row)} |" for row in ROWS]
        RESULTS.write_text("\n".join(lines) + "\n")
        print("\n" + "\n".join(lines))


# --------------------------------------------------------------------------------- the load


@dataclass
class Load:
    """Steady mixed load through the gateway: one thread per user; see the module docstring."""

    url: str
    users: list[dict[str, str]]
    # Seconds between one thread's requests: at most 12.5 per second per user, under the documented
    # 1,000 per minute per user (a quiet machine sent more and met 429s in the 60 s fault).
    pause: float = 0.08
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    retried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    acknowledged: list[str] = field(default_factory=list)  # idempotency keys answered 201
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for i, headers in enumerate(self.users):
            thread = threading.Thread(target=self._run, args=(headers, random.Random(i)), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _send(self, c: httpx.Client, method: str, path: str, expected: int, **kwargs: Any) -> httpx.Response | None:
        response: httpx.Response | None = None
        for attempt in range(2):
            try:
                response = c.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                with self._lock:
                    self.sent += 1
                    self.failed.append(f"{method} {path}: {exc!r}")
                return None
            if response.status_code in (502, 503) and attempt == 0:
                with self._lock:
                    self.retried += 1
                continue
            break
        assert response is not None
        with self._lock:
            self.sent += 1
            self.statuses[response.status_code] += 1
            if response.status_code != expected:
                self.failed.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    def _run(self, headers: dict[str, str], rng: random.Random) -> None:
        mine: list[str] = []
        with httpx.Client(base_url=self.url, timeout=30) as c:
            for step in itertools.cycle(("create", "list", "read", "update")):
                if self._stop.is_set():
                    return
                if step == "create" or not mine:
                    key = uuid.uuid4().hex
                    r = self._send(
                        c, "POST", "/api/v1/tasks", 201,
                        json={"title": f"load {key}"}, headers={**headers, "Idempotency-Key": key},
                    )  # fmt: skip
                    if r is not None and r.status_code == 201:
                        mine.append(r.json()["id"])
                        with self._lock:
                            self.acknowledged.append(key)
                elif step == "list":
                    self._send(c, "GET", "/api/v1/tasks?limit=20", 200, headers=headers)
                elif step == "read":
                    self._send(c, "GET", f"/api/v1/tasks/{rng.choice(mine)}", 200, headers=headers)
                else:
                    priority = rng.choice(["low", "medium", "high"])
                    self._send(
                        c,
                        "PATCH",
                        f"/api/v1/tasks/{rng.choice(mine)}",
                        200,
                        json={"priority": priority},
                        headers=headers,
                    )
                time.sleep(self.pause)


@dataclass
class LiveStream:
    """An event stream through the gateway that resumes with Last-Event-ID whenever it ends (an
    instance draining) or breaks; ``ids`` are the event ids received, in order."""

    url: str
    headers: dict[str, str]
    last_id: int
    ids: list[int] = field(default_factory=list)
    connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LiveStream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=10)) as c:
            while not self._stop.is_set():
                headers = {**self.headers, "Last-Event-ID": str(self.last_id)}
                try:
                    with c.stream("GET", "/api/v1/events/stream", headers=headers) as r:
                        if r.status_code != 200:
                            time.sleep(1)  # Retry-After
                            continue
                        self.connections += 1
                        for line in r.iter_lines():
                            if line.startswith("id: "):
                                self.last_id = int(line[4:])
                                self.ids.append(self.last_id)
                            if self._stop.is_set():
                                return
                except httpx.TransportError:
                    time.sleep(0.2)


def owner_seqs(url: str, email: str, after: int) -> list[int]:
    rows = sql(
        url,
        "SELECT o.seq FROM outbox o JOIN users u ON u.id = o.owner_id "
        f"WHERE u.email = '{email}' AND o.seq > {after} ORDER BY o.seq",
    )
    return [int(r[0]) for r in rows]


def settle_and_count(fleet: Fleet, load: Load, within: float = 120.0) -> tuple[int, int]:
    """Wait until the relay sent every event and both consumers applied each one (at most
    ``within`` seconds); return (duplicated, events lost) over the whole database."""
    url = fleet.database_url
    deadline = time.monotonic() + within
    while True:
        [[events, unsent]] = sql(url, "SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL) FROM outbox")
        applied = dict(sql(url, "SELECT consumer, count(*) FROM processed_events GROUP BY consumer"))
        lost = sum(events - applied.get(c, 0) for c in CONSUMERS)
        if (unsent == 0 and lost == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    [[tasks, titles]] = sql(url, "SELECT count(*), count(DISTINCT title) FROM tasks")
    [[created_applied]] = sql(url, "SELECT coalesce(sum(created), 0) FROM daily_task_stats")
    stored = {row[0] for row in sql(url, "SELECT title FROM tasks")}
    missing = [k for k in load.acknowledged if f"load {k}" not in stored]
    assert missing == [], "acknowledged tasks missing"
    duplicated = (tasks - titles) + abs(int(created_applied) - tasks)
    return duplicated, lost


def record(fault: str, fleet: Fleet, load: Load, stream_lost: int = 0) -> None:
    duplicated, lost = settle_and_count(fleet, load)
    lost += stream_lost
    ROWS.append((fault, load.sent, len(load.failed), duplicated, lost, load.retried))
    assert load.sent > 100, load.sent
    assert (load.failed, duplicated, lost) == ([], 0, 0), (load.failed[:10], load.statuses)


# --------------------------------------------------------------------------------- the faults


def test_kill_minus_9_of_one_api_instance(fleet: Fleet) -> None:
    victim = fleet.status()["ports"]["api-2"]
    with Load(fleet.url, fleet.users) as load:
        time.sleep(3)
        os.kill(fleet.pid("api-2"), signal.SIGKILL)
        killed_at = len(fleet.access_log())
        time.sleep(8)
    after = fleet.access_log()[killed_at:]
    tried = [line for line in after if f"127.0.0.1:{victim}" in line]
    # Refused once, then out for fail_timeout (5 s): at most one try per 5 s after the kill.
    assert len(tried) <= 3, tried
    assert not any(f"upstream=127.0.0.1:{victim} " in line for line in after)  # never the one that answered
    fleet.run("restart", "api-2")
    record("kill -9 one API instance", fleet, load)


def test_rolling_restart_of_all_three(fleet: Fleet) -> None:
    """Besides the load, a live stream of one user: each instance's drain ends the stream, it
    resumes through nginx with Last-Event-ID, and receives every event of that user exactly once."""
    url = fleet.database_url
    start = max(owner_seqs(url, "load0@example.com", 0), default=0)
    with LiveStream(fleet.url, fleet.users[0], start) as stream, Load(fleet.url, fleet.users) as load:
        time.sleep(2)
        for name in ("api-1", "api-2", "api-3"):
            before = fleet.pid(name)
            fleet.run("restart", name)  # SIGTERM (drain), wait for the exit, start, wait until healthy
            assert fleet.pid(name) != before
            time.sleep(1)
        load._stop.set()  # no new events; the stream catches up
        deadline = time.monotonic() + 30
        while True:
            [[unsent]] = sql(url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            expected = owner_seqs(url, "load0@example.com", start)
            if (unsent == 0 and stream.ids[-1:] == expected[-1:]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert stream.connections >= 2  # the stream did end with a drain and resume
    stream_lost = len(set(expected) - set(stream.ids))
    stream_twice = len(stream.ids) - len(set(stream.ids))
    assert (stream_lost, stream_twice) == (0, 0), (stream.ids[-5:], expected[-5:])
    assert stream.ids == expected
    record("rolling restart of all three (SIGTERM, wait, start)", fleet, load, stream_lost)


def test_redis_stopped_for_30_seconds(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.url, timeout=15) as c:
        email = "revoked@example.com"
        c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "R"})
        token = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
        revoked = {"Authorization": f"Bearer {token}"}
        assert c.post("/api/v1/auth/logout", headers=revoked).status_code == 204
        with Load(fleet.url, fleet.users) as load:
            time.sleep(2)
            fleet.redis.stop()
            try:
                time.sleep(2)
                assert c.get("/api/v1/tasks", headers=revoked).status_code == 401  # the database denylist
                limited = c.get("/api/v1/tasks", headers=fleet.users[0])
                assert limited.status_code == 200
                assert int(limited.headers["ratelimit-limit"]) == 1000  # still counted (per instance)
                time.sleep(28)
            finally:
                fleet.redis.start()  # empty: as after a crash
            time.sleep(3)
        assert c.get("/api/v1/tasks", headers=revoked).status_code == 401
    record("Redis stopped for 30 s", fleet, load)


def test_rabbitmq_unreachable_for_60_seconds(fleet: Fleet) -> None:
    url = fleet.database_url
    with Load(fleet.url, fleet.users) as load:
        time.sleep(2)
        fleet.loop.run(fleet.amqp.cut())
        try:
            time.sleep(60)
            [[unsent]] = sql(url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            assert unsent > 0  # the writes went on; their events waited in the outbox
        finally:
            fleet.loop.run(fleet.amqp.restore())
        time.sleep(2)
    record("RabbitMQ unreachable for 60 s", fleet, load)


def test_a_worker_killed_mid_message(fleet: Fleet) -> None:
    url = fleet.database_url

    async def hold_and_kill() -> None:
        holder = await asyncpg.connect(_dsn(url))
        try:
            # Every notification handler now blocks inside its unit of work: messages in hand.
            await holder.execute("BEGIN; LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
            blocked = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'notifications'::regclass"
            deadline = time.monotonic() + 30
            while await holder.fetchval(blocked) == 0:
                assert time.monotonic() < deadline, "no handler reached the notifications table"
                await asyncio.sleep(0.1)
            os.kill(fleet.pid("worker-1"), signal.SIGKILL)
            await asyncio.sleep(0.5)
        finally:
            await holder.execute("ROLLBACK")
            await holder.close()

    with Load(fleet.url, fleet.users) as load:
        time.sleep(2)
        # The load must complete tasks: notifications are made for task.completed.
        with httpx.Client(base_url=fleet.url, timeout=15) as c:
            for headers in fleet.users:
                task = c.post(
                    "/api/v1/tasks",
                    json={"title": f"done {uuid.uuid4().hex}"},
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                ).json()
                c.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=headers)
        asyncio.run(hold_and_kill())
        fleet.run("restart", "worker-1")
        time.sleep(3)
    record("a worker killed mid-message", fleet, load)
