"""Fixtures of the Schemathesis runs: a real ``taskhub serve`` on each backend, a user and an admin.

Budget in ``make test`` (see ``test_schemathesis.py``): a fixed seed and a few examples per
operation and mode, so that CI is repeatable and short. ``--deep`` (or ``TASKHUB_FUZZ_DEEP=1``)
runs a random seed and many more examples.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import JWT_SECRET, PASSWORD, Backend, _truncate
from tests.servers import TASKHUB, ServerProcess, serve

ADMIN_EMAIL = "admin@fuzz.io"
USER_EMAIL = "user@fuzz.io"


@dataclass
class FuzzTarget:
    """A running server and Bearer tokens of a user and of an admin on it."""

    server: ServerProcess
    log: Path
    user_token: str
    admin_token: str

    def login(self, email: str) -> str:
        """A new access token for ``email`` (its own session)."""
        with self.server.client() as client:
            r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def fuzz_target(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """``taskhub serve`` on the current backend, shared by the module's runs (rate limits off: the
    fuzzer is one client sending thousands of requests), with ``user@fuzz.io`` and
    ``admin@fuzz.io`` (made by ``create-admin``). Tables are emptied afterwards."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{backend.name}")
    env = {
        **os.environ,
        "TASKHUB_DATABASE_URL": backend.url,
        "TASKHUB_DATA_DIR": str(tmp),
        "TASKHUB_JWT_SECRET": JWT_SECRET,
        "TASKHUB_ARGON2_MEMORY_COST": "1024",
        "TASKHUB_ARGON2_TIME_COST": "1",
        "TASKHUB_AUTO_MIGRATE": "false",
        "TASKHUB_RATE_LIMIT_ENABLED": "false",
        "TASKHUB_ACCESS_LOG": "false",
        "TASKHUB_PURGE_INTERVAL": "0",
        "TASKHUB_LOG_LEVEL": "WARNING",
    }
    made = subprocess.run(
        [TASKHUB, "create-admin", "--email", ADMIN_EMAIL, "--name", "Fuzz Admin"],
        env={**env, "TASKHUB_ADMIN_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    try:
        with serve(tmp, {k: v for k, v in env.items() if k.startswith("TASKHUB_")}) as server:
            with server.client() as client:
                r = client.post(
                    "/api/v1/auth/register", json={"email": USER_EMAIL, "password": PASSWORD, "name": "Fuzz"}
                )
                assert r.status_code == 201, r.text
            target = FuzzTarget(server, server.log, "", "")
            target.user_token = target.login(USER_EMAIL)
            target.admin_token = target.login(ADMIN_EMAIL)
            yield target
    finally:
        asyncio.run(_truncate(backend.url, tmp))


def server_alive(target: FuzzTarget) -> bool:
    """True while the server still answers ``/health``."""
    try:
        return httpx.get(f"{target.server.url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
