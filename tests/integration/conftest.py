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
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.conftest import JWT_SECRET, PG_URL, unavailable
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
