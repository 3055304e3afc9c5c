"""``make fleet SPLIT=1`` end to end: deploy/fleet/fleet.py ``up`` in split mode, the public API
through its gateway, Prometheus scraping each service, and ``down`` leaving no process behind.

One fleet for the module: the split gateway (deploy/nginx/split.conf.tmpl), auth x1, users x1,
tasks x2, notifications x1 (``taskhub serve --service``), 2 workers, the relay, Prometheus, a
database of its own on the machine's PostgreSQL (``TASKHUB_FLEET_DATABASE=local``), a
redis-server of the module's own and the machine's RabbitMQ (an exchange and queues of the
fleet's own, deleted by ``down``). About 25 s on the 2-core CI machine, most of it the services'
start and the worker's round trip for the notification.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL
from tests.events.conftest import AMQP_URL
from tests.fleet import FLEET_SCRIPT, fleet
from tests.integration.conftest import OwnRedis
from tests.servers import TASKHUB, free_port

pytestmark = pytest.mark.integration

SERVICES = ["auth-1", "users-1", "tasks-1", "tasks-2", "notifications-1"]
PASSWORD = "split fleet passphrase"


@dataclass
class SplitFleet:
    """The running split fleet: its environment, gateway URL and ``status`` after ``up``."""

    env: dict[str, str]
    url: str
    status: dict[str, Any]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(FLEET_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def run_dir(self) -> Path:
        return Path(self.env["TASKHUB_FLEET_DIR"])


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """``check()``'s first truthy value, polling every 0.2 s; fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s"
        time.sleep(0.2)
    return value


@pytest.fixture(scope="module")
def split_fleet() -> Iterator[SplitFleet]:
    redis = OwnRedis(free_port())
    redis.start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_")},
        "TASKHUB_FLEET_SPLIT": "1",
        "TASKHUB_FLEET_DIR": tempfile.mkdtemp(prefix="taskhub-fleet-split-"),
        "TASKHUB_FLEET_PORT": "0",
        "TASKHUB_FLEET_DATABASE": "local",
        "TASKHUB_FLEET_PG_URL": make_url(PG_URL).set(database="postgres").render_as_string(hide_password=False),
        "TASKHUB_FLEET_REDIS_URL": redis.url,
        "TASKHUB_FLEET_AMQP_URL": AMQP_URL,
        "TASKHUB_FLEET_TASKHUB": TASKHUB,
        "TASKHUB_ARGON2_MEMORY_COST": "1024",
        "TASKHUB_ARGON2_TIME_COST": "1",
    }
    split = SplitFleet(env, "", {})
    try:
        done = split.run("up", timeout=180)
        logs = split.run_dir / "logs"
        assert done.returncode == 0, done.stderr[-3000:] + "".join(
            f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log"))
        )
        split.url = done.stdout.strip()
        split.status = json.loads(split.run("status").stdout)
        yield split
    finally:
        split.run("down", timeout=180)
        redis.stop()


def _token_kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _requests_counted(url: str, token: str, method: str, route: str) -> float:
    """``taskhub_http_requests_total`` of one instance for ``method route`` (all statuses)."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5).text
    wanted = f'taskhub_http_requests_total{{method="{method}",route="{route}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(wanted))


class TestSplitFleet:
    def test_the_processes_of_the_split_topology_run(self, split_fleet: SplitFleet) -> None:
        status = split_fleet.status
        assert status["split"] is True
        assert sorted(status["pids"]) == sorted([*SERVICES, "nginx", "prometheus", "relay", "worker-1", "worker-2"])
        assert all(isinstance(pid, int) for pid in status["pids"].values()), status["pids"]
        assert not any(name.startswith("api-") for name in status["ports"])

    def test_the_public_api_through_the_gateway(self, split_fleet: SplitFleet) -> None:
        with httpx.Client(base_url=split_fleet.url, timeout=15) as c:
            r = c.post("/api/v1/auth/register", json={"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
            assert r.status_code == 201, r.text
            login = c.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
            jwks = c.get("/.well-known/jwks.json")
            assert jwks.status_code == 200
            # one EdDSA key, the one that signed the token (made by `up` with `taskhub keys rotate`)
            assert [(k["kty"], k["crv"], k["alg"], k["kid"]) for k in jwks.json()["keys"]] == [
                ("OKP", "Ed25519", "EdDSA", _token_kid(token))
            ]
            me = {"Authorization": f"Bearer {token}"}
            created = c.post("/api/v1/tasks", json={"title": "Split report"}, headers=me)
            assert created.status_code == 201, created.text
            task = created.json()
            read = c.get(f"/api/v1/tasks/{task['id']}", headers=me)
            assert (read.status_code, read.json()["title"], read.json()["status"]) == (200, "Split report", "todo")
            assert c.get("/api/v1/users/me", headers=me).json()["email"] == "ann@example.com"
            done = c.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=me)
            assert done.status_code == 200, done.text
            # relay -> RabbitMQ -> a worker -> the notifications service's table
            page = eventually(lambda: (b := c.get("/api/v1/notifications", headers=me).json())["items"] and b)
            assert [(n["kind"], n["title"]) for n in page["items"]] == [("completed", "Split report")]
            assert c.get("/api/v1/notifications", headers={"Authorization": "Bearer x"}).status_code == 401
        # each request was answered by its own service: counted by that service's instances only
        metrics_token = (split_fleet.run_dir / "metrics_token").read_text().strip()
        port = split_fleet.status["ports"]

        def counted(name: str, method: str, route: str) -> float:
            return _requests_counted(f"http://127.0.0.1:{port[name]}", metrics_token, method, route)

        assert counted("auth-1", "POST", "/api/v1/auth/login") == 1
        assert sum(counted(n, "POST", "/api/v1/tasks") for n in ("tasks-1", "tasks-2")) == 1
        assert counted("users-1", "POST", "/api/v1/tasks") == 0
        assert counted("notifications-1", "GET", "/api/v1/notifications") >= 2
        assert counted("tasks-1", "GET", "/api/v1/notifications") == 0

    def test_prometheus_scrapes_each_service(self, split_fleet: SplitFleet) -> None:
        prometheus = split_fleet.status["prometheus"]
        port = split_fleet.status["ports"]
        expected = sorted((n.rsplit("-", 1)[0], f"http://127.0.0.1:{port[n]}/metrics") for n in SERVICES)

        def api_targets_up() -> list[tuple[str, str]] | None:
            targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            api = [t for t in targets if t["labels"]["job"] == "taskhub-api"]
            if not api or any(t["health"] != "up" for t in api):
                return None
            return sorted((t["labels"].get("service", ""), t["scrapeUrl"]) for t in api)

        assert eventually(api_targets_up) == expected

    def test_an_up_in_the_other_mode_is_refused(self, split_fleet: SplitFleet) -> None:
        env = {**split_fleet.env, "TASKHUB_FLEET_SPLIT": "0"}
        done = subprocess.run(
            [sys.executable, str(FLEET_SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert (done.returncode, done.stdout) == (2, "")
        assert "runs in split mode, not single: `down` it first" in done.stderr
        again = split_fleet.run("up", timeout=60)  # the same mode: nothing new started
        assert (again.returncode, again.stdout.strip()) == (0, split_fleet.url)
        assert "started" not in again.stderr

    def test_down_leaves_no_process(self, split_fleet: SplitFleet) -> None:
        """Last in the module: stops the fleet (the fixture's own ``down`` then finds nothing)."""
        recorded = {}
        for name in split_fleet.status["pids"]:
            pid_text, started = (split_fleet.run_dir / "pids" / f"{name}.pid").read_text().split()
            recorded[name] = (int(pid_text), started)
        database = split_fleet.status["database_url"].rsplit("/", 1)[1]
        done = split_fleet.run("down", timeout=120)
        assert done.returncode == 0, done.stderr
        still = {name: pid for name, (pid, started) in recorded.items() if fleet._start_time(pid) == started}
        assert still == {}
        assert not split_fleet.run_dir.exists()
        pg = split_fleet.env["TASKHUB_FLEET_PG_URL"]
        assert fleet.psql(pg, f"SELECT count(*) FROM pg_database WHERE datname = '{database}'") == "0"
