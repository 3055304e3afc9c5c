"""Observability of real ``taskhub serve`` processes (embedded SQLite: no other service needed):
metrics across two worker processes, the JSON access log, secrets kept out of every log line,
and the graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import JWT_SECRET
from tests.events.conftest import BrokerNames
from tests.helpers import parse_metrics, sample
from tests.integration.conftest import seed_user
from tests.servers import TASKHUB, ServerProcess, free_port, serve, taskhub_env

pytestmark = pytest.mark.integration

PASSWORD = "first passphrase of ann"
NEW_PASSWORD = "second passphrase of ann"
WRONG_PASSWORD = "not the passphrase at all"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def fresh_get(server: ServerProcess, path: str, **headers: str) -> httpx.Response:
    """One request on a new connection (so the kernel may hand it to either worker)."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        return c.get(path, headers=headers)


def per_process_counts(directory: Path, route: str, status: str) -> dict[str, float]:
    """``taskhub_http_requests_total{route, status}`` in each worker's own file (pid -> value)."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.split("_")[-1]
        for family in MultiProcessCollector.merge([str(path)], accumulate=False):  # type: ignore[no-untyped-call]
            for s in family.samples:
                if (
                    s.name == "taskhub_http_requests_total"
                    and s.labels.get("route") == route
                    and s.labels.get("status") == status
                ):
                    counts[pid] = counts.get(pid, 0.0) + s.value
    return counts


def test_two_workers_report_one_consistent_total(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: serve clears it
    sent = 0
    with serve(tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(directory)}, args=["--workers", "2"]) as server:
        # Fresh connections until both workers served some (the kernel picks the accepting one).
        while sent < 400:
            for _ in range(20):
                assert fresh_get(server, f"/unknown/{sent}").status_code == 404
                sent += 1
            if len(per_process_counts(directory, "unmatched", "404")) == 2:
                break
        # A request is counted when its response has been sent: the last one may lag a moment.
        deadline = time.monotonic() + 5
        while sum((by_process := per_process_counts(directory, "unmatched", "404")).values()) < sent:
            assert time.monotonic() < deadline, by_process
            time.sleep(0.05)
        assert len(by_process) == 2, by_process  # both workers counted some of them ...
        assert sum(by_process.values()) == sent
        totals = set()
        for _ in range(8):  # ... and whichever answers the scrape reports their sum
            samples = parse_metrics(fresh_get(server, "/metrics").text)
            totals.add(sample(samples, "taskhub_http_requests_total", method="GET", route="unmatched", status="404"))
            assert sample(samples, "taskhub_http_requests_in_flight") == 1  # live gauges summed, too
        assert totals == {float(sent)}
    assert not (directory / "counter_999999.db").exists()


def test_json_access_log_line_field_by_field(tmp_path: Path) -> None:
    env = {"TASKHUB_LOG_FORMAT": "json", "TASKHUB_LOG_LEVEL": "INFO"}
    with serve(tmp_path, env) as server, server.client() as c:
        c.post("/api/v1/auth/register", json={"email": "ann@x.io", "password": PASSWORD, "name": "Ann"})
        token = c.post("/api/v1/auth/login", json={"email": "ann@x.io", "password": PASSWORD}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        user_id = c.get("/api/v1/users/me", headers=auth).json()["id"]
        r = c.get("/api/v1/tasks?limit=5", headers={**auth, "X-Request-ID": "trace-me-0001"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-me-0001"
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    (record,) = [rec for rec in lines if rec.get("event") == "request" and rec.get("request_id") == "trace-me-0001"]
    assert set(record) == {
        "event", "level", "logger", "timestamp", "request_id", "method", "path", "route", "status",
        "duration_ms", "user_id",
    }  # fmt: skip
    assert record["event"] == "request" and record["level"] == "info" and record["logger"] == "taskhub.access"
    assert ISO_UTC.match(record["timestamp"]), record["timestamp"]
    assert record["method"] == "GET"
    assert record["path"] == "/api/v1/tasks"  # never the query string
    assert record["route"] == "/api/v1/tasks"
    assert record["status"] == 200
    assert isinstance(record["duration_ms"], float) and 0 < record["duration_ms"] < 5000
    assert record["user_id"] == user_id
    # Every line of the server is JSON (uvicorn's own included), none is plain text.
    assert all(line.startswith("{") for line in server.log.read_text().splitlines() if line.strip())


def test_no_secret_reaches_any_log_line(tmp_path: Path) -> None:
    """Log in, refresh, change the password, log in again (JSON, form, a wrong password): the
    DEBUG-level output of the server contains none of the passwords or tokens."""
    secrets: list[str] = [PASSWORD, NEW_PASSWORD, WRONG_PASSWORD]
    env = {"TASKHUB_LOG_FORMAT": "json", "TASKHUB_LOG_LEVEL": "DEBUG"}
    with serve(tmp_path, env, args=["--access-log"]) as server, server.client() as c:
        c.post("/api/v1/auth/register", json={"email": "ann@x.io", "password": PASSWORD, "name": "Ann"})
        first = c.post("/api/v1/auth/login", json={"email": "ann@x.io", "password": PASSWORD}).json()
        second = c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
        auth = {"Authorization": f"Bearer {second['access_token']}"}
        assert c.get("/api/v1/tasks", headers=auth).status_code == 200
        r = c.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=auth,
        )
        assert r.status_code == 204
        assert c.post("/api/v1/auth/login", json={"email": "ann@x.io", "password": WRONG_PASSWORD}).status_code == 401
        form = c.post("/api/v1/auth/token", data={"username": "ann@x.io", "password": NEW_PASSWORD}).json()
        assert (
            c.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {form['access_token']}"}).status_code
            == 204
        )
        for tokens in (first, second, form):
            secrets += [tokens["access_token"], tokens["refresh_token"]]
            secrets.append(tokens["access_token"].rsplit(".", 1)[1])  # the JWT signature alone
    output = server.log.read_text()
    assert output.count('"event":"request"') >= 8  # the access log was on: the check means something
    assert '"logger":"uvicorn.access"' in output
    leaked = [s for s in secrets if s in output]
    assert leaked == []


def _ready(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    r = fresh_get(server, "/ready")
    return r.status_code, r.json()


def test_sigterm_drains_ready_says_503_while_in_flight_requests_finish(tmp_path: Path) -> None:
    with serve(tmp_path, {"TASKHUB_DRAIN_SECONDS": "0", "TASKHUB_LOG_LEVEL": "INFO"}) as server:
        assert _ready(server)[0] == 200
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
        body = json.dumps({"email": "slow@x.io", "password": PASSWORD, "name": "Slow"}).encode()
        head = (
            f"POST /api/v1/auth/register HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:10])  # the request is in flight until the rest of its body comes
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        for _ in range(3):  # still accepting and serving while it drains; only /ready says go away
            status, ready = _ready(server)
            assert (status, ready["status"]) == (503, "draining")
            assert ready["checks"]["database"]["ok"] is True
            assert fresh_get(server, "/health").status_code == 200
            time.sleep(0.2)
        assert server.proc.poll() is None
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]  # the in-flight request finished
        server.proc.wait(timeout=10)  # ... and then the instance stopped by itself
        log = server.log.read_text()
        assert "draining" in log and "drained" in log


def _hold_a_request(server: ServerProcess) -> tuple[socket.socket, bytes]:
    """A registration whose body is only partly sent: in flight until the rest is sent."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    body = json.dumps({"email": "held@x.io", "password": PASSWORD, "name": "Held"}).encode()
    head = (
        f"POST /api/v1/auth/register HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:10])
    return sock, body[10:]


def test_sigterm_ends_live_streams_and_refuses_new_ones_while_requests_finish(tmp_path: Path) -> None:
    """SIGTERM ends an open event stream after the events it already sent (the client reconnects
    elsewhere with Last-Event-ID), a new stream gets 503 with Retry-After, an in-flight request
    still finishes, and then the process exits by itself."""
    import threading

    with serve(tmp_path, {"TASKHUB_DRAIN_SECONDS": "0", "TASKHUB_LOG_LEVEL": "INFO"}) as server:
        with server.client() as c:
            account = {"email": "ann@x.io", "password": PASSWORD, "name": "Ann"}
            assert c.post("/api/v1/auth/register", json=account).status_code == 201
            login = c.post("/api/v1/auth/login", json={"email": account["email"], "password": PASSWORD})
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        lines: list[str] = []
        ended = threading.Event()

        def read_stream() -> None:
            with (
                httpx.Client(base_url=server.url, timeout=30) as sc,
                sc.stream("GET", "/api/v1/events/stream", headers=auth) as r,
            ):
                assert r.status_code == 200
                lines.extend(r.iter_lines())
            ended.set()

        reader = threading.Thread(target=read_stream, daemon=True)
        reader.start()
        with server.client() as c:
            deadline = time.monotonic() + 10
            while "retry: 1000" not in lines:  # sent once the stream is subscribed: no event is missed
                assert time.monotonic() < deadline, "the stream did not open"
                time.sleep(0.05)
            task = c.post("/api/v1/tasks", json={"title": "seen before the drain"}, headers=auth).json()
            while not any(task["id"] in line for line in lines):
                assert time.monotonic() < deadline, lines
                time.sleep(0.05)
        sock, rest = _hold_a_request(server)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        assert ended.wait(5), "the stream stayed open during the drain"
        assert lines[0] == "retry: 1000" and [x for x in lines if x.startswith("event: ")] == ["event: task.created"]
        refused = httpx.get(f"{server.url}/api/v1/events/stream", headers=auth, timeout=10)
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
        assert refused.json()["status"] == 503 and "Last-Event-ID" in refused.json()["detail"]
        assert server.proc.poll() is None  # the held request keeps the drain going
        sock.sendall(rest)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]
        # uvicorn re-raises the signal it handled once it has shut down gracefully
        assert server.proc.wait(timeout=10) == -signal.SIGTERM
        assert "ending_streams" in server.log.read_text()


def test_sigterm_without_requests_in_flight_stops_promptly(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=10)
        assert time.monotonic() - started < 3


def test_drain_seconds_hold_the_instance_up(tmp_path: Path) -> None:
    with serve(tmp_path, {"TASKHUB_DRAIN_SECONDS": "1.5"}) as server:
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _ready(server)[0] == 503 and server.proc.poll() is None
        started = time.monotonic()
        server.proc.wait(timeout=10)
        assert 0.5 <= time.monotonic() - started < 4


async def test_one_grep_follows_a_change_from_the_request_to_the_worker(
    pg_url: str, broker_names: BrokerNames, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A real ``serve`` (its relay publishes to RabbitMQ) and a real ``taskhub worker``, JSON logs:
    the request id of a write is on the access line, and on the worker's line for each consumer,
    with the event id; the worker's own /metrics counts what it handled."""
    # (async only for the RabbitMQ fixture; the processes are driven from a thread)
    await asyncio.to_thread(_follow_one_change, pg_url, broker_names.env(), start_server, tmp_path)


def _follow_one_change(
    pg_url: str, broker_env: dict[str, str], start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    email, password = seed_user(pg_url)
    env = {"TASKHUB_DATABASE_URL": pg_url, "TASKHUB_LOG_FORMAT": "json", "TASKHUB_LOG_LEVEL": "INFO",
           **broker_env}  # fmt: skip
    server = start_server(**env)
    metrics_port = free_port()
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [TASKHUB, "worker"],
            env=taskhub_env(tmp_path, **env, TASKHUB_JWT_SECRET=JWT_SECRET, TASKHUB_METRICS_PORT=str(metrics_port)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with server.client() as c:
            token = c.post("/api/v1/auth/login", json={"email": email, "password": password}).json()["access_token"]
            r = c.post(
                "/api/v1/tasks",
                json={"title": "follow me"},
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "follow-me-42"},
            )
            assert r.status_code == 201
        deadline = time.monotonic() + 30
        while True:
            lines = [json.loads(x) for x in worker_log.read_text().splitlines() if x.startswith("{")]
            handled = [x for x in lines if x.get("event") == "event_handled" and x.get("request_id") == "follow-me-42"]
            if len(handled) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(x["consumer"] for x in handled) == ["analytics", "notifications"], worker_log.read_text()
        assert {x["event_id"] for x in handled} == {handled[0]["event_id"]}
        assert all(x["type"] == "task.created" and x["outcome"] == "handled" for x in handled)
        served = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
        [access] = [x for x in served if x.get("event") == "request" and x.get("request_id") == "follow-me-42"]
        assert (access["route"], access["status"]) == ("/api/v1/tasks", 201)
        samples = parse_metrics(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text)
        for consumer in ("notifications", "analytics"):
            assert sample(samples, "taskhub_worker_messages_total", consumer=consumer, outcome="handled") == 1
            assert sample(samples, "taskhub_worker_handler_duration_seconds_count", consumer=consumer) == 1
            assert ("taskhub_dlq_messages", frozenset({("consumer", consumer)})) in samples  # read at start
            assert sample(samples, "taskhub_dlq_messages", consumer=consumer) == 0
        assert sample(samples, "taskhub_process_cpu_seconds_total") > 0
    finally:
        worker.terminate()
        worker.wait(timeout=15)
