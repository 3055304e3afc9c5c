"""The gateway (deploy/nginx/nginx.conf.tmpl) run by the real nginx binary.

``nginx -t`` accepts the fleet's rendering, and deploy/nginx/nginx.conf (docker compose) is
exactly the template's rendering for compose. Behaviour is checked through HTTP against stub
upstreams that record what reached them and answer what the test chooses (a 503 from every
instance cannot be asked of the real API): least_conn over keep-alive connections, retries only
where safe, request ids, X-Forwarded-For, the edge limit, gzip, an unbuffered event stream,
``/metrics`` kept inside, static files from disk with immutable caching for hashed names.
The real API behind this gateway is exercised by tests/integration/test_fleet_faults.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import crossplane
import httpx
import pytest

from tests.conftest import IN_CI
from tests.fleet import fleet
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin:/bin")

if NGINX is None:  # pragma: no cover - .ci/run installs it
    if IN_CI:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    pytest.skip("nginx is not installed", allow_module_level=True)

# What the compose file's nginx service gets (deploy/docker/compose.yaml mounts the static files).
COMPOSE_UPSTREAMS = ["api-1:8000", "api-2:8000", "api-3:8000"]
COMPOSE_STATIC = "/srv/taskhub/static"


# ------------------------------------------------------------------------------- stub upstreams


@dataclass
class Seen:
    """One request as an upstream received it."""

    method: str
    path: str
    headers: dict[str, str]
    peer_port: int


@dataclass
class Upstream:
    """A stub API instance on a free loopback port (HTTP/1.1 keep-alive); ``respond`` decides the
    answer to each request: (status, headers, body)."""

    respond: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                stub.seen.append(
                    Seen(
                        self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.client_address[1]
                    )
                )
                status, headers, body = stub.respond(self)
                if status == 0:  # the stream handler wrote its own answer
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _any

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # nginx closing a kept-alive connection is not an error here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def answer(status: int, body: dict[str, Any] | None = None) -> Callable[..., tuple[int, dict[str, str], bytes]]:
    payload = json.dumps(body or {"status": status}).encode()
    return lambda _handler: (status, {"Content-Type": "application/json"}, payload)


@contextlib.contextmanager
def upstreams(*responders: Callable[..., tuple[int, dict[str, str], bytes]]) -> Iterator[list[Upstream]]:
    stubs = [Upstream(r) for r in responders]
    for stub in stubs:
        stub.start()
    try:
        yield stubs
    finally:
        for stub in stubs:
            stub.stop()


# ------------------------------------------------------------------------------------- nginx


@dataclass
class Gateway:
    url: str
    static_dir: Path
    run_dir: Path


@contextlib.contextmanager
def gateway(addresses: list[str], *, rate: int = 1000, burst: int = 1000) -> Iterator[Gateway]:
    """nginx with the template rendered for ``addresses``, on a free port, until the block ends.
    The run and static directories are world-readable: nginx's workers run as nobody under root."""
    run_dir = Path(tempfile.mkdtemp(prefix="taskhub-nginx-test-"))
    run_dir.chmod(0o755)
    static = run_dir / "static"
    static.mkdir()
    for sub in ("logs", "tmp"):
        (run_dir / sub).mkdir()
    port = free_port()
    conf = fleet.render_nginx(
        addresses,
        listen=f"127.0.0.1:{port}",
        static_dir=str(static),
        temp_dir=str(run_dir / "tmp"),
        access_log=str(run_dir / "logs" / "nginx-access.log"),
        error_log=str(run_dir / "logs" / "error.log"),
        pid_file=str(run_dir / "nginx.pid"),
        worker_processes="1",
        rate=rate,
        burst=burst,
    )
    (run_dir / "nginx.conf").write_text(conf)
    argv = [str(NGINX), "-e", str(run_dir / "logs" / "error.log"), "-c", str(run_dir / "nginx.conf")]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert proc.poll() is None, (run_dir / "logs" / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        yield Gateway(f"http://127.0.0.1:{port}", static, run_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)


def client(gw: Gateway) -> httpx.Client:
    return httpx.Client(base_url=gw.url, timeout=15)


# ------------------------------------------------------------------------------------- tests


class TestConfiguration:
    def test_nginx_accepts_the_fleet_rendering(self) -> None:
        with gateway(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]) as gw:
            conf = (gw.run_dir / "nginx.conf").read_text()
        assert fleet._PLACEHOLDER.search(conf) is None  # every field filled
        # the compose file parses too (not strict: crossplane does not know a map's entries)
        parsed = crossplane.parse(str(NGINX_CONF), single=True)
        assert (parsed["status"], parsed["errors"]) == ("ok", [])

    def test_the_compose_file_is_the_template_rendered_for_compose(self) -> None:
        expected = fleet.render_nginx(COMPOSE_UPSTREAMS, listen="80", static_dir=COMPOSE_STATIC)
        assert NGINX_CONF.read_text() == expected, "regenerate: python3 deploy/fleet/fleet.py render-nginx ..."

    def test_a_template_field_without_a_value_is_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        template = tmp_path / "t.conf"
        template.write_text("listen @LISTEN@; root @SOMETHING_NEW@;\n")
        monkeypatch.setattr(fleet, "NGINX_TEMPLATE", template)
        with pytest.raises(ValueError, match="@SOMETHING_NEW@"):
            fleet.render_nginx(["a:1"], listen="80", static_dir="/x")


class TestSplitConfiguration:
    """The fleet's rendering of deploy/nginx/split.conf.tmpl (``make fleet SPLIT=1``); the real
    services behind it are exercised by tests/integration/test_fleet_split.py."""

    SERVERS = {
        "auth": ["127.0.0.1:1"],
        "users": ["127.0.0.1:2"],
        "tasks": ["127.0.0.1:3", "127.0.0.1:4"],
        "notifications": ["127.0.0.1:5"],
    }

    def test_nginx_accepts_the_split_rendering(self, tmp_path: Path) -> None:
        (tmp_path / "tmp").mkdir()
        conf = fleet.render_split_nginx(
            self.SERVERS, listen="127.0.0.1:1", pid_file=str(tmp_path / "nginx.pid"), temp_dir=str(tmp_path / "tmp")
        )
        assert "${" not in conf  # every field filled; nginx's own $variables stay
        assert "proxy_set_header Host $http_host;" in conf
        (tmp_path / "nginx.conf").write_text(conf)
        argv = [str(NGINX), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf"), "-t"]
        checked = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        assert conf.count("server 127.0.0.1:") == 5
        assert "server 127.0.0.1:3 max_fails=1 fail_timeout=5s;\n        server 127.0.0.1:4" in conf

    def test_a_service_without_an_instance_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="at least one notifications instance"):
            fleet.render_split_nginx(
                {**self.SERVERS, "notifications": []}, listen="80", pid_file="/x/pid", temp_dir="/x"
            )

    def test_a_split_template_field_without_a_value_is_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        template = tmp_path / "t.conf"
        template.write_text("listen ${LISTEN}; root ${SOMETHING_NEW}; set $x $host;\n")
        monkeypatch.setattr(fleet, "SPLIT_TEMPLATE", template)
        with pytest.raises(ValueError, match=r"\$\{SOMETHING_NEW\}"):
            fleet.render_split_nginx(self.SERVERS, listen="80", pid_file="/x/pid", temp_dir="/x")


class TestRetries:
    """Both instances answer 503 (or 502): how many reached an instance tells whether nginx
    sent the request again."""

    @pytest.mark.parametrize("status", [502, 503, 504])
    @pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
    def test_idempotent_requests_go_to_the_next_instance(self, status: int, method: str) -> None:
        with (
            upstreams(answer(status), answer(status)) as (a, b),
            gateway([a.address, b.address]) as gw,
            client(gw) as c,
        ):
            r = c.request(method, "/api/v1/tasks/x")
            assert r.status_code == status  # the last instance's answer, passed on
            assert (len(a.seen), len(b.seen)) == (1, 1)
            # both answered 5xx: both are out for fail_timeout, and nginx answers for them
            after = c.get("/api/v1/tasks")
            assert (after.status_code, after.headers["content-type"]) == (503, "application/problem+json")

    def test_task_creation_with_an_idempotency_key_is_sent_again(self) -> None:
        with upstreams(answer(503), answer(503)) as (a, b), gateway([a.address, b.address]) as gw, client(gw) as c:
            r = c.post("/api/v1/tasks", json={"title": "x"}, headers={"Idempotency-Key": "k-1"})
            assert r.status_code == 503
            assert (len(a.seen), len(b.seen)) == (1, 1)
            assert {s.headers["idempotency-key"] for s in a.seen + b.seen} == {"k-1"}

    @pytest.mark.parametrize(
        ("method", "path", "headers"),
        [
            ("POST", "/api/v1/tasks", {}),  # no key: a second try could create a second task
            ("POST", "/api/v1/auth/refresh", {"Idempotency-Key": "k"}),  # the key means nothing here
            ("POST", "/api/v1/tasks/bulk", {"Idempotency-Key": "k"}),
            ("PATCH", "/api/v1/tasks/x", {"Idempotency-Key": "k"}),
        ],
    )
    def test_other_non_idempotent_requests_are_sent_once(self, method: str, path: str, headers: dict[str, str]) -> None:
        with upstreams(answer(503), answer(503)) as (a, b), gateway([a.address, b.address]) as gw, client(gw) as c:
            r = c.request(method, path, json={"title": "x"}, headers=headers)
            assert r.status_code == 503
            assert len(a.seen) + len(b.seen) == 1

    def test_a_refused_connection_is_retried_for_any_method_and_the_instance_taken_out(self) -> None:
        dead = f"127.0.0.1:{free_port()}"  # nothing listens: the request never left nginx
        with upstreams(answer(201, {"id": "t"})) as (live,), gateway([dead, live.address]) as gw, client(gw) as c:
            statuses = [c.post("/api/v1/tasks", json={"title": str(i)}).status_code for i in range(6)]
            assert statuses == [201] * 6
            assert len(live.seen) == 6
            log = (gw.run_dir / "logs" / "nginx-access.log").read_text()
            # the dead instance was tried once, then left out for fail_timeout
            assert log.count(f"upstream={dead}, {live.address}") == 1, log

    def test_no_instance_answering_is_a_503_problem(self) -> None:
        dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        with gateway(dead) as gw, client(gw) as c:
            r = c.get("/api/v1/tasks", headers={"X-Request-ID": "rid-1"})
            assert (r.status_code, r.headers["content-type"], r.headers["retry-after"]) == (
                503,
                "application/problem+json",
                "1",
            )
            assert r.json()["status"] == 503
            assert r.headers.get_list("x-request-id") == ["rid-1"]


class TestHeaders:
    def test_request_ids_pass_through_or_are_made(self) -> None:
        with upstreams(answer(200)) as (a,), gateway([a.address]) as gw, client(gw) as c:
            given = c.get("/api/v1/me", headers={"X-Request-ID": "abc.DEF_1:2-3"})
            assert given.headers.get_list("x-request-id") == ["abc.DEF_1:2-3"]
            made = c.get("/api/v1/me")
            insane = c.get("/api/v1/me", headers={"X-Request-ID": "bad id with spaces"})
            for r in (made, insane):
                [rid] = r.headers.get_list("x-request-id")
                assert len(rid) == 32 and int(rid, 16) >= 0
            assert made.headers["x-request-id"] != insane.headers["x-request-id"]
            assert [s.headers["x-request-id"] for s in a.seen] == [
                "abc.DEF_1:2-3",
                made.headers["x-request-id"],
                insane.headers["x-request-id"],
            ]

    def test_the_client_address_replaces_what_the_client_claims(self) -> None:
        with upstreams(answer(200)) as (a,), gateway([a.address]) as gw, client(gw) as c:
            c.get("/api/v1/me", headers={"X-Forwarded-For": "203.0.113.9"})
            c.get("/api/v1/me")
            assert [s.headers["x-forwarded-for"] for s in a.seen] == ["127.0.0.1", "127.0.0.1"]

    def test_connections_to_the_instances_are_kept_alive(self) -> None:
        with upstreams(answer(200)) as (a,), gateway([a.address]) as gw, client(gw) as c:
            for _ in range(5):
                assert c.get("/api/v1/me").status_code == 200
            assert len({s.peer_port for s in a.seen}) == 1
            assert {s.headers.get("connection", "") for s in a.seen} == {""}

    def test_answers_are_compressed(self) -> None:
        big = {"items": [{"title": f"task {i}", "description": "x" * 40} for i in range(100)]}
        with upstreams(answer(200, big)) as (a,), gateway([a.address]) as gw, client(gw) as c:
            r = c.get("/api/v1/tasks", headers={"Accept-Encoding": "gzip"})
            assert r.headers["content-encoding"] == "gzip"
            assert r.json() == big
            raw = c.get("/api/v1/tasks", headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in raw.headers

    def test_metrics_are_not_served_at_the_edge(self) -> None:
        with upstreams(answer(200)) as (a,), gateway([a.address]) as gw, client(gw) as c:
            assert c.get("/metrics").status_code == 404
            assert a.seen == []


class TestEdgeLimit:
    def test_a_flood_from_one_address_gets_429_problems(self) -> None:
        with upstreams(answer(200)) as (a,), gateway([a.address], rate=1, burst=2) as gw, client(gw) as c:
            answers = [c.get("/api/v1/me") for _ in range(5)]
            assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
            limited = answers[3]
            assert (limited.headers["content-type"], limited.headers["retry-after"]) == (
                "application/problem+json",
                "1",
            )
            assert limited.json()["status"] == 429
            assert len(a.seen) == 3


class TestEventStream:
    def test_events_reach_the_client_while_the_stream_is_open(self) -> None:
        go_on = threading.Event()

        def stream(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()

            def chunk(data: bytes) -> None:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                handler.wfile.flush()

            chunk(b"id: 1\nevent: task.created\ndata: {}\n\n")
            go_on.wait(10)  # the second event only after the client saw the first one
            chunk(b"id: 2\nevent: task.updated\ndata: {}\n\n")
            handler.wfile.write(b"0\r\n\r\n")
            return 0, {}, b""

        with (
            upstreams(stream) as (a,),
            gateway([a.address]) as gw,
            client(gw) as c,
            c.stream("GET", "/api/v1/events/stream", headers={"Accept-Encoding": "gzip"}) as r,
        ):
            started = time.monotonic()
            lines = r.iter_lines()
            assert next(lines) == "id: 1"
            assert time.monotonic() - started < 5  # not held back until the stream ends (10 s)
            go_on.set()
            rest = list(lines)
            assert "id: 2" in rest
            assert "content-encoding" not in r.headers


class TestStaticFiles:
    def test_hashed_files_come_from_disk_cached_for_good_and_plain_names_go_to_the_api(self) -> None:
        with upstreams(answer(200)) as (a,), gateway([a.address]) as gw, client(gw) as c:
            (gw.static_dir / "js").mkdir()
            hashed_file = gw.static_dir / "js" / "app.3f2a9c1b0d4e.js"
            hashed_file.write_text("export {};")
            for p in (gw.static_dir / "js", hashed_file):
                p.chmod(0o755)
            hashed = c.get("/static/js/app.3f2a9c1b0d4e.js")
            assert (hashed.status_code, hashed.text) == (200, "export {};")
            assert hashed.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert hashed.headers["x-content-type-options"] == "nosniff"
            assert hashed.headers["access-control-allow-origin"] == "*"
            assert "etag" in hashed.headers and "last-modified" in hashed.headers
            assert a.seen == []  # none of that reached an instance
            # not on disk (not exported there yet, or an unknown hash), and plain names: the instances
            assert c.get("/static/js/app.000000000000.js").status_code == 200
            assert c.get("/static/js/app.js").status_code == 200
            assert [s.path for s in a.seen] == ["/static/js/app.000000000000.js", "/static/js/app.js"]
