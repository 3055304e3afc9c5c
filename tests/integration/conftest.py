"""Real processes against the real PostgreSQL and Redis of this machine.

These tests start ``taskhub serve`` processes. They never skip in CI (``CI=true``): an unreachable
service fails them loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.conftest import JWT_SECRET, PG_URL, unavailable
from tests.events.conftest import broker_names  # noqa: F401 - the RabbitMQ fixture, for these tests too
from tests.servers import TASKHUB, ServerProcess, free_port, serve

SHARED_REDIS = os.environ.get("TASKHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this module."""
    name = "taskhub_it_" + secrets.token_hex(4)
    dsn = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {PG_URL} is unreachable: {exc!r}")
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    migrated = subprocess.run(
        [TASKHUB, "migrate"],
        env={**os.environ, "TASKHUB_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def shared_redis() -> Iterator[str]:
    """The machine's Redis (database 9), emptied before and after the test."""
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        unavailable(f"Redis at {SHARED_REDIS} is unreachable: {exc!r}")
    yield SHARED_REDIS
    client.flushdb()
    client.close()


@dataclass
class OwnRedis:
    """A redis-server process of the test's own, on a free port, that the test may stop."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.proc = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        pytest.fail("own redis-server did not start")

    def stop(self) -> None:
        """``SHUTDOWN NOSAVE``: the data is gone, as after a crash."""
        with contextlib.suppress(redis.RedisError):  # the server drops the connection as it stops
            redis.Redis(port=self.port).shutdown(nosave=True)
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(free_port())
    server.start()
    yield server
    if server.proc is not None:
        server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``taskhub serve`` processes (data dir ``tmp_path``, the test JWT secret) with the given
    ``TASKHUB_*`` environment on top; each is healthy when returned, and all are stopped afterwards."""
    with contextlib.ExitStack() as stack:

        def start(**env: str) -> ServerProcess:
            return stack.enter_context(serve(tmp_path, {"TASKHUB_JWT_SECRET": JWT_SECRET, **env}))

        yield start


def seed_user(database_url: str, email_index: int = 1) -> tuple[str, str]:
    """Create demo users through the CLI (no HTTP, so no rate-limit budget is spent)."""
    result = subprocess.run(
        [TASKHUB, "seed-demo", "--users", str(email_index), "--tasks", "0"],
        env={
            **os.environ,
            "TASKHUB_DATABASE_URL": database_url,
            "TASKHUB_ARGON2_MEMORY_COST": "1024",
            "TASKHUB_ARGON2_TIME_COST": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return f"demo{email_index}@example.com", "demo-password-2026"


PG_CLUSTER_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "pg-cluster" / "pg_cluster.py"
URL_LINE = re.compile(r"(writer|replica): (postgresql\+asyncpg://postgres@127\.0\.0\.1:(\d+)/taskhub)")


def free_port_block(count: int) -> int:
    """First of ``count`` consecutive free loopback ports, picked at random in 16000..32767: below
    Linux's ephemeral range, so no outgoing connection takes one of them while the cluster runs."""
    for _ in range(200):
        base = random.randrange(16000, 32768 - count, 10)
        if all(_port_free(base + i) for i in range(count)):
            return base
    pytest.fail(f"no {count} consecutive free ports in 16000..32767")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class PgCluster:
    """The etcd + Patroni + HAProxy cluster of ``deploy/pg-cluster``, driven through its script.

    ``writer`` and ``replicas`` are SQLAlchemy asyncpg URLs as ``up`` printed them last.
    """

    env: dict[str, str]
    base: int
    writer: str = ""
    replicas: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def run(self, command: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(PG_CLUSTER_SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self) -> None:
        """Run ``up`` (idempotent: it waits for primary + two streaming replicas) and parse its URLs."""
        done = self.run("up")
        assert done.returncode == 0, f"pg_cluster.py up failed:\n{done.stderr}"
        self.lines = done.stdout.splitlines()
        parsed = [URL_LINE.fullmatch(line) for line in self.lines]
        assert all(parsed), f"unexpected output lines: {self.lines}"
        self.writer = next(m.group(2) for m in parsed if m and m.group(1) == "writer")
        self.replicas = [m.group(2) for m in parsed if m and m.group(1) == "replica"]

    def status(self) -> dict[str, Any]:
        done = self.run("status", timeout=30)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.run("down", timeout=180)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A three-node Patroni cluster of the session's own: its own run directory and ten free
    ports (``TASKHUB_TEST_PG_CLUSTER_PORT_BASE`` to pin them), stopped and deleted at the end.
    With ``TASKHUB_TEST_PG_CLUSTER_REUSE=1`` (development only) the ``make pg-cluster`` cluster
    named by ``TASKHUB_PG_CLUSTER_DIR``/``_PORT_BASE`` is used and left running."""
    for binary, package in (("etcd", "etcd-server"), ("haproxy", "haproxy")):
        if shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            unavailable(f"{binary} is not installed (apt-get install {package})")
    if os.environ.get("TASKHUB_TEST_PG_CLUSTER_REUSE"):
        # Development: the cluster `make pg-cluster` runs (TASKHUB_PG_CLUSTER_DIR/_PORT_BASE as
        # exported), brought up if needed and left running afterwards. Never set in CI.
        reused = PgCluster(env=dict(os.environ), base=int(os.environ.get("TASKHUB_PG_CLUSTER_PORT_BASE", "15430")))
        reused.up()
        yield reused
        return
    base = int(os.environ.get("TASKHUB_TEST_PG_CLUSTER_PORT_BASE") or free_port_block(10))
    # Not pytest's tmp_path: it lives in root's 0700 directory, which the postgres user cannot enter.
    run_dir = tempfile.mkdtemp(prefix="taskhub-pg-cluster-test-")
    env = {
        **os.environ,
        "TASKHUB_PG_CLUSTER_DIR": run_dir,
        "TASKHUB_PG_CLUSTER_PORT_BASE": str(base),
        "TASKHUB_PG_CLUSTER_TIMEOUT": "120",
    }
    cluster = PgCluster(env=env, base=base)
    try:
        cluster.up()
        yield cluster
    finally:
        stopped = cluster.down()
        assert stopped.returncode == 0, stopped.stderr
        assert not Path(run_dir).exists()
        assert processes_naming(run_dir) == [], "pg_cluster.py down left processes running"


def processes_naming(text: str) -> list[str]:
    """Command lines of the live processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if text in cmdline:
                    found.append(f"{proc.name}: {cmdline}")
    return found


@dataclass
class ClusterDatabase:
    """A fresh, migrated database on the ``pg_cluster``: SQLAlchemy URLs through the writer port
    and on each replica node, as ``up`` printed the roles when the fixture started."""

    name: str
    writer: str
    replicas: list[str]
    cluster: PgCluster


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def cluster_sql(url: str, sql: str, *args: Any) -> list[Any]:
    """Run one statement over its own asyncpg connection to ``url`` (an SQLAlchemy URL); its rows."""
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False), timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def wait_for(predicate: Callable[[], Any], what: str, within_s: float = 20.0, interval: float = 0.1) -> None:
    """Await ``predicate()`` (sync or async) until truthy; fail with ``what`` after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within_s:g} s waiting for {what}")
        await asyncio.sleep(interval)


def patroni_maintenance(cluster: PgCluster, on: bool) -> None:
    """Turn Patroni's maintenance mode (``patronictl pause``) on or off and wait until every member
    runs with it. While it is on, Patroni neither fails over nor resumes a replica's WAL replay
    (it otherwise resumes a paused replay on its next loop, PostgreSQL 14+)."""
    import urllib.request

    status = cluster.status()
    rest = [status["ports"][f"patroni-{m['name']}"] for m in status["members"]]
    request = urllib.request.Request(
        f"http://127.0.0.1:{rest[0]}/config",
        data=json.dumps({"pause": on}).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    deadline = time.monotonic() + 20
    while True:
        seen = []
        for port in rest:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/patroni", timeout=5) as response:
                seen.append(bool(json.load(response).get("pause", False)))
        if all(flag == on for flag in seen):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Patroni members did not switch maintenance mode to {on}: {seen}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster_database(pg_cluster: PgCluster) -> Iterator[ClusterDatabase]:
    """A database of this module's own on the cluster, migrated through the writer and visible on
    both replicas; dropped at the end. Runs ``up`` first: an earlier failover test may have moved
    the primary, and ``up`` prints the current roles."""
    from taskhub.config import Settings
    from taskhub.db import migrate
    from taskhub.db.session import make_engine

    pg_cluster.up()
    name = "taskhub_it_" + secrets.token_hex(4)
    writer = with_database(pg_cluster.writer, name)
    replicas = [with_database(u, name) for u in pg_cluster.replicas]

    async def create() -> None:
        await cluster_sql(pg_cluster.writer, f'CREATE DATABASE "{name}"')
        engine = make_engine(writer, Settings(database_url=writer))
        await migrate.upgrade(engine)
        await engine.dispose()

        async def migrated_everywhere() -> bool:
            for url in replicas:
                try:
                    rows = await cluster_sql(url, "select to_regclass('tasks') is not null")
                except (OSError, asyncpg.PostgresError):
                    return False
                if not rows[0][0]:
                    return False
            return True

        await wait_for(migrated_everywhere, "the schema on both replicas")

    asyncio.run(create())
    yield ClusterDatabase(name, writer, replicas, pg_cluster)
    pg_cluster.up()  # a test may have stopped a node: Patroni restarts it; wait until it streams
    asyncio.run(cluster_sql(pg_cluster.writer, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
