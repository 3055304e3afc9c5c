"""Malformed and hostile request headers and bodies, on SQLite and PostgreSQL: each gets a clear
4xx problem (or is ignored where the contract says so), never a 500. Raw-socket cases (slow bodies,
framing, oversize headers) are in ``tests/integration/test_protocol.py``."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taskhub.config import Settings
from taskhub.core.middleware import accepts_gzip
from tests.conftest import Api

pytestmark = pytest.mark.asyncio

Headers = list[tuple[str, bytes]]


def raw(headers: dict[str, str], **extra: bytes) -> Headers:
    """Headers as bytes, so a test can send what httpx would refuse to encode."""
    return [(k, v.encode()) for k, v in headers.items()] + [(k.replace("_", "-"), v) for k, v in extra.items()]


class TestAuthorization:
    @pytest.mark.parametrize(
        ("value", "detail"),
        [
            (b"", "Send an access token in the Authorization: Bearer header."),
            (b"Bearer", "Send an access token in the Authorization: Bearer header."),
            (b"Bearer ", "Send an access token in the Authorization: Bearer header."),
            (b"Basic dXNlcjpwYXNzd29yZA==", "Send an access token in the Authorization: Bearer header."),
            (b"Bearer a.b.c", "The access token is invalid."),
            (b"Bearer " + b"x" * 20_000, "The access token is invalid."),
            (b"Bearer \xff\xfe.\xfa.\x80", "The access token is invalid."),
            (b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "The access token is invalid."),  # alg none
        ],
    )
    async def test_malformed_is_401_with_a_challenge(
        self, api: Api, client: httpx.AsyncClient, value: bytes, detail: str
    ) -> None:
        await api.user("a@x.io")
        r = await client.get("/api/v1/tasks/stats", headers=[("Authorization", value)])
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="taskhub"'
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == detail

    async def test_scheme_is_case_insensitive_and_spaces_are_trimmed(self, api: Api, client: httpx.AsyncClient) -> None:
        token = (await api.user("a@x.io"))["Authorization"].removeprefix("Bearer ")
        for value in (f"bearer {token}", f"BEARER {token}", f"Bearer   {token}  "):
            r = await client.get("/api/v1/tasks/stats", headers={"Authorization": value})
            assert r.status_code == 200, value


class TestConditionalHeaders:
    async def test_if_match(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("c@x.io")
        task = await api.task(h)
        path = f"/api/v1/tasks/{task['id']}"
        for value, status in [
            (b"\xff\x01garbage", 412),
            (b"null", 412),
            (b'W/"1"', 412),  # strong comparison: a weak validator never matches (RFC 9110 13.1.1)
            (b'"1 "', 412),
            (b", ".join([b'"x"'] * 3000) + b', "1"', 200),  # a long list that names it
        ]:
            r = await client.patch(path, json={"title": "t"}, headers=raw(h, **{"If-Match": value}))
            assert r.status_code == status, (value[:20], r.text)
        r = await client.patch(path, json={"title": "u"}, headers={**h, "If-Match": "*"})
        assert r.status_code == 200 and r.json()["version"] == 3

    async def test_if_none_match(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("c@x.io")
        task = await api.task(h)
        path = f"/api/v1/tasks/{task['id']}"
        for value, status in [
            (b"\xff\x00,,,W/", 200),
            (b'"2"', 200),
            (b"*", 304),
            (b'W/"1"', 304),  # weak comparison (RFC 9110 13.1.2)
            (b'"9", "1"', 304),
        ]:
            r = await client.get(path, headers=raw(h, **{"If-None-Match": value}))
            assert r.status_code == status, value
            if status == 304:
                assert r.content == b"" and r.headers["etag"] == '"1"'


class TestIdempotencyKeyLength:
    async def test_empty_and_overlong_keys_are_422(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("k@x.io")
        for key in ("", "k" * 256):
            r = await client.post("/api/v1/tasks", json={"title": "t"}, headers={**h, "Idempotency-Key": key})
            assert r.status_code == 422
            assert r.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


class TestBodies:
    @pytest.mark.parametrize(
        ("content_type", "body", "status"),
        [
            (None, b'{"title": "t"}', 415),
            ("text/json", b'{"title": "t"}', 415),
            ("multipart/form-data; boundary=x", b"--x--", 415),
            ("application/x-www-form-urlencoded", b"title=t", 415),
            ("application/vnd.api+json", b'{"title": "t"}', 201),  # any +json suffix is JSON
            ("application/json; charset=utf-8", b'{"title": "t"}', 201),
            ("application/json", b"\xef\xbb\xbf" + b'{"title": "t"}', 201),  # a UTF-8 BOM is tolerated
        ],
    )
    async def test_content_types(
        self, api: Api, client: httpx.AsyncClient, content_type: str | None, body: bytes, status: int
    ) -> None:
        h = await api.user("b@x.io")
        headers = {**h, **({"Content-Type": content_type} if content_type else {})}
        r = await client.post("/api/v1/tasks", content=body, headers=headers)
        assert r.status_code == status, r.text

    @pytest.mark.parametrize(
        "body",
        [
            b"[" * 100_000,  # deeper than json.loads can recurse
            b'{"title": "x", "due_date": ' + b"9" * 5000 + b"}",  # an integer over Python's 4300 digits
            '{"title": "caf\xe9"}'.encode("latin-1"),  # not UTF-8, whatever a charset parameter says
            b'{"title": "t",',
        ],
    )
    async def test_bodies_json_cannot_parse_are_the_malformed_json_problem(
        self, api: Api, client: httpx.AsyncClient, body: bytes
    ) -> None:
        """Finding: three of these were FastAPI's own 400 ("There was an error parsing the body",
        type bad-request), unlike every other malformed body."""
        h = await api.user("b@x.io")
        r = await client.post("/api/v1/tasks", content=body, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.json()["type"] == "https://taskhub.dev/problems/malformed-json"
        assert r.json()["title"] == "Malformed JSON"

    async def test_duplicate_keys_last_one_wins(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("b@x.io")
        body = b'{"title": "first", "title": "second"}'
        r = await client.post("/api/v1/tasks", content=body, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 201 and r.json()["title"] == "second"


class TestAcceptEncoding:
    @pytest.mark.parametrize(
        ("value", "gzipped"),
        [
            (b"gzip", True),
            (b"deflate, gzip;q=0.5", True),
            (b"GZIP", True),
            (b"gzip;q=0", False),  # Finding: Starlette compressed anyway (RFC 9110 12.5.3)
            (b"gzip;q=0.0, *", False),
            (b"*", True),  # any coding: gzip it is
            (b"br", False),
            (b"gzip;q=abc", False),
            (b"gzip;q=2", False),
            (b"\xff\xfe, gzip;q=1", True),
            (b"", False),
        ],
    )
    async def test_gzip_only_when_accepted(
        self, api: Api, client: httpx.AsyncClient, value: bytes, gzipped: bool
    ) -> None:
        h = await api.user("g@x.io")
        for i in range(8):
            await api.task(h, title=f"task {i}", description="x" * 200)
        r = await client.get("/api/v1/tasks", headers=raw(h, **{"Accept-Encoding": value}))
        assert r.status_code == 200
        assert (r.headers.get("content-encoding") == "gzip") is gzipped, value
        assert len(r.json()["items"]) == 8  # httpx decodes gzip; identity parses as is

    @pytest.mark.parametrize(
        ("value", "accepted"),
        [
            ("gzip", True),
            ("x, gzip;q=1.000", True),
            ("gzip; q=0.001", True),
            ("gzip;q=0.", False),
            ("*;q=0.1", True),
            ("gzip;q=-1", False),
            ("gzip;level=9", False),
            (",,,", False),
        ],
    )
    async def test_accepts_gzip(self, value: str, accepted: bool) -> None:
        assert accepts_gzip(value) is accepted

    async def test_a_gzipped_body_is_gzip(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("g@x.io")
        for i in range(8):
            await api.task(h, title=f"task {i}", description="x" * 200)
        async with client.stream("GET", "/api/v1/tasks", headers={**h, "Accept-Encoding": "gzip"}) as r:
            raw_body = b"".join([chunk async for chunk in r.aiter_raw()])
        assert gzip.decompress(raw_body).startswith(b'{"items":')


class TestForwardedFor:
    async def test_garbage_falls_back_to_the_peer(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        """Behind a trusted proxy, whatever the chain holds, the key is an address: the peer's when
        the right-most entry is not one (ports, garbage, 5,000 entries, IPv6 handled)."""
        settings = settings_factory(
            rate_limit_enabled=True, rate_limit_anon="50 per minute", trusted_proxies=["127.0.0.1/32"]
        )
        app = await app_factory(settings)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def remaining(xff: bytes | None) -> int:
                headers = [("X-Forwarded-For", xff)] if xff is not None else []
                r = await client.get("/api/v1/tasks/stats", headers=headers)
                assert r.status_code == 401  # anonymous: counted, then refused
                return int(r.headers["RateLimit-Remaining"])

            assert await remaining(None) == 49  # the peer's budget
            assert await remaining(b"garbage") == 48  # still the peer's
            assert await remaining(b"1.2.3.4:8080") == 47  # a port is not an address
            assert await remaining(b"\xff\xfe, ::::") == 46
            assert await remaining(b", ".join([b"10.0.0.1"] * 5000) + b", bad") == 45
            assert await remaining(b"203.0.113.9") == 49  # a real client behind the proxy: its own budget
            assert await remaining(b"garbage, 203.0.113.9") == 48  # the right-most untrusted entry
            assert await remaining(b"2001:db8::1") == 49
            assert await remaining(b"2001:db8::1, 127.0.0.1") == 48  # the proxy itself is skipped


class TestRequestId:
    async def test_insane_ids_are_replaced(self, client: httpx.AsyncClient) -> None:
        for value in (b"a b", b"\xff\xfe", b"x" * 129, b"<script>", b""):
            r = await client.get("/health", headers=[("X-Request-ID", value)])
            assert r.status_code == 200
            assert len(r.headers["x-request-id"]) == 32 and r.headers["x-request-id"] != value.decode("latin-1")
        r = await client.get("/health", headers={"X-Request-ID": "client-7:a.b_c"})
        assert r.headers["x-request-id"] == "client-7:a.b_c"
