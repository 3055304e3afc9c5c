"""HTTP on the wire, against a real ``taskhub serve`` (uvicorn with httptools) on PostgreSQL, with
raw sockets: slow clients, request framing and oversize headers (docs/security.md, "Server limits").
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.integration.conftest import ServerProcess

pytestmark = pytest.mark.integration


def connect(server: ServerProcess, timeout: float = 5.0) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends within ``timeout`` seconds, and whether it closed the connection."""
    sock.settimeout(timeout)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received, True
            received += chunk
    except TimeoutError:
        return received, False


def token(client: httpx.Client, email: str) -> str:
    r = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "P"})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    return str(r.json()["access_token"])


def test_a_trickled_body_holds_no_database_connection_and_times_out(
    pg_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    """One pooled connection and a 1 s pool timeout: while a client trickles a body a byte at a time,
    other requests still get that connection at once (they would wait 1 s and answer 503 if the slow
    request held it). After TASKHUB_BODY_TIMEOUT the slow request gets a 408 and its socket is closed."""
    server = start_server(
        TASKHUB_DATABASE_URL=pg_url,
        TASKHUB_DATABASE_POOL_SIZE="1",
        TASKHUB_DATABASE_MAX_OVERFLOW="0",
        TASKHUB_DATABASE_POOL_TIMEOUT="1",
        TASKHUB_BODY_TIMEOUT="3",
        TASKHUB_RATE_LIMIT_ENABLED="false",
    )
    with server.client() as client:
        bearer = token(client, "slow@x.io")
        slow = connect(server)
        started = time.monotonic()
        slow.sendall(
            b"POST /api/v1/tasks HTTP/1.1\r\nHost: taskhub\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {bearer}\r\n".encode()
            + b'Content-Length: 200\r\n\r\n{"title": "'
        )
        fast: list[tuple[int, float]] = []
        while time.monotonic() - started < 2.5:
            slow.sendall(b"x")
            t0 = time.monotonic()
            r = client.post("/api/v1/tasks", json={"title": "fast"}, headers={"Authorization": f"Bearer {bearer}"})
            fast.append((r.status_code, time.monotonic() - t0))
            time.sleep(0.2)
        assert len(fast) >= 5
        assert all(status == 201 for status, _ in fast), fast
        assert max(elapsed for _, elapsed in fast) < 0.9, fast  # never waited for the pool

        answer, closed = read_until_closed(slow, timeout=3)
        waited = time.monotonic() - started
        slow.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"application/problem+json" in answer
        assert closed  # the rest of the body was never read: the connection must not be reused
        assert 3 <= waited < 5.5
        listed = client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {bearer}"}).json()
        assert listed["total"] == len(fast)  # the slow task was never created


def test_a_body_sent_in_time_in_small_pieces_is_fine(pg_url: str, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(TASKHUB_DATABASE_URL=pg_url, TASKHUB_BODY_TIMEOUT="3", TASKHUB_RATE_LIMIT_ENABLED="false")
    with server.client() as client:
        bearer = token(client, "pieces@x.io")
    body = b'{"title": "in pieces"}'
    sock = connect(server)
    sock.sendall(
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: taskhub\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Authorization: Bearer {bearer}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    for i in range(0, len(body), 4):
        sock.sendall(body[i : i + 4])
        time.sleep(0.1)
    answer, closed = read_until_closed(sock, timeout=5)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:200]
    assert closed


FRAMINGS = [
    b"Content-Length: -1\r\n",
    b"Content-Length: 2\r\nContent-Length: 3\r\n",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",  # request smuggling's classic
    b"Content-Length: abc\r\n",
]


def test_ambiguous_framing_and_oversize_headers(pg_url: str, start_server: Callable[..., ServerProcess]) -> None:
    """Ambiguous framing is a 400 and the connection is closed (nothing is left to smuggle a second
    request in). httptools sets no header size limit (docs/security.md: put nginx in front, whose
    ``large_client_header_buffers`` does); what the server must do is answer and keep serving."""
    server = start_server(TASKHUB_DATABASE_URL=pg_url)
    for framing in FRAMINGS:
        sock = connect(server)
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: taskhub\r\nContent-Type: application/json\r\n"
            + framing
            + b"\r\n{}\r\n\r\n"
        )
        answer, closed = read_until_closed(sock, timeout=5)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 400 "), (framing, answer[:200])
        assert closed, framing
    for request in (
        b"GET /health HTTP/1.1\r\nHost: taskhub\r\nConnection: close\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: taskhub\r\nConnection: close\r\n"
        + b"".join(b"X-%d: a\r\n" % i for i in range(10_000))
        + b"\r\n",
    ):
        sock = connect(server, timeout=10)
        sock.sendall(request)
        answer, closed = read_until_closed(sock, timeout=10)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
        assert closed
    assert httpx.get(f"{server.url}/health").status_code == 200
