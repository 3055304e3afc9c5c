"""Real processes against the real PostgreSQL and Redis of this machine.

These tests start ``taskhub serve`` processes. They never skip in CI (``CI=true``): an unreachable
service fails them loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.conftest import IN_CI, JWT_SECRET, PG_URL
from tests.events.conftest import broker_names  # noqa: F401 - the RabbitMQ fixture, for these tests too

BIN = Path(sys.executable).parent
TASKHUB = shutil.which("taskhub", path=str(BIN)) or "taskhub"
SHARED_REDIS = os.environ.get("TASKHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def unavailable(message: str) -> None:
    """Fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@dataclass
class Server:
    """A running ``taskhub serve`` process."""

    base: str
    proc: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``taskhub serve`` processes with the given environment; all stopped afterwards."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        port = free_port()
        full_env = {
            **os.environ,
            "TASKHUB_DATA_DIR": str(tmp_path),
            "TASKHUB_JWT_SECRET": JWT_SECRET,
            "TASKHUB_ARGON2_MEMORY_COST": "1024",
            "TASKHUB_ARGON2_TIME_COST": "1",
            "TASKHUB_LOG_LEVEL": "WARNING",
            **env,
        }
        log = (tmp_path / f"server-{port}.log").open("wb")
        proc = subprocess.Popen([TASKHUB, "serve", "--port", str(port)], env=full_env, stdout=log, stderr=log)
        server = Server(f"http://127.0.0.1:{port}", proc)
        servers.append(server)
        for _ in range(200):
            if proc.poll() is not None:
                pytest.fail(f"server exited: {(tmp_path / f'server-{port}.log').read_text()}")
            try:
                if httpx.get(f"{server.base}/health", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                time.sleep(0.05)
        pytest.fail("server did not become healthy")

    yield start
    for server in servers:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


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
