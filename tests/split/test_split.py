"""The split deployment itself (issue 16): the gateway shows the monolith's documents and dashboard,
key rotation across processes, one bounded JWKS refetch for unknown kids, retirement, and the auth
service being down. The HTTP contract suite runs on the same topology as the ``split`` backend
(``tests/conftest.py``); these tests add what only a split deployment has.

Besides the topology, the module starts its own instances on the same database and key file, so it
can count and stop them without disturbing the topology: a second auth service, and two tasks
services that verify with its JWKS (one with the topology's long cache, one with a 1 s cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from taskhub.app import create_app
from taskhub.config import Settings
from taskhub.core.keys import read_key_set
from tests.conftest import Api, Backend, client_for
from tests.helpers import parse_metrics, sample
from tests.servers import TASKHUB, ServerProcess, serve, taskhub_env
from tests.split_topology import SplitTopology, start_gateway

pytestmark = [pytest.mark.asyncio, pytest.mark.split_only]
H = dict[str, str]
JWKS = "/.well-known/jwks.json"
STATIC = Path(__file__).parent.parent.parent / "src" / "taskhub" / "web" / "static"


def topology(backend: Backend) -> SplitTopology:
    assert backend.split is not None
    return backend.split


@dataclass
class Side:
    """This module's own instances: ``auth`` (a second auth service), ``strict`` (tasks, JWKS from
    ``auth``, the topology's 3600 s cache and 30 s refetch interval) and ``eager`` (tasks, 1 s cache,
    no refetch interval)."""

    auth: ServerProcess
    strict: ServerProcess
    eager: ServerProcess
    tmp: Path


@pytest.fixture(scope="module")
def side(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    topo = topology(backend)
    tmp = tmp_path_factory.mktemp("split-side")
    with contextlib.ExitStack() as stack:

        def start(name: str, service: str, **env: str) -> ServerProcess:
            (tmp / name).mkdir()
            return stack.enter_context(serve(tmp / name, {**topo.env, **env}, args=["--service", service]))

        auth = start("auth-2", "auth")
        url = auth.url + JWKS
        strict = start("strict", "tasks", TASKHUB_JWT_JWKS_URL=url)
        eager = start(
            "eager", "tasks", TASKHUB_JWT_JWKS_URL=url, TASKHUB_JWKS_CACHE_TTL="1", TASKHUB_JWKS_REFETCH_INTERVAL="0"
        )
        yield Side(auth, strict, eager, tmp)


def jwks_fetches(server: ServerProcess) -> float:
    """How many JWKS documents ``server`` (an auth service) has answered, from its /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sample(parse_metrics(text), "taskhub_http_requests_total", method="GET", route=JWKS, status="200")


def keys_cli(topo: SplitTopology, tmp: Path, *args: str) -> str:
    """``taskhub keys ...`` on the topology's key file; its output."""
    result = subprocess.run(
        [TASKHUB, "keys", *args], env=taskhub_env(tmp, **topo.env), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def kid_of(headers: H) -> str:
    return str(jwt.get_unverified_header(headers["Authorization"][7:])["kid"])


async def login_with_kid(api: Api, email: str, kid: str) -> H:
    """Log in until the auth service signs with ``kid`` (it re-reads the key file within a second)."""
    deadline = time.monotonic() + 10
    while True:
        h = {"Authorization": f"Bearer {(await api.login(email))['access_token']}"}
        if kid_of(h) == kid or time.monotonic() > deadline:
            return h
        await asyncio.sleep(0.2)


async def status_becomes(client: httpx.AsyncClient, url: str, headers: H, expected: int) -> int:
    """GET ``url`` until it answers ``expected`` (10 s at most); the last status."""
    deadline = time.monotonic() + 10
    while True:
        status = (await client.get(url, headers=headers)).status_code
        if status == expected or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


class TestGateway:
    async def test_documents_and_dashboard_are_the_single_process_ones(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        monolith = create_app(Settings(jwt_secret="x" * 40))
        r = await client.get("/openapi.json")
        assert r.status_code == 200
        assert r.json() == monolith.openapi()
        async with client_for(app) as single:  # the in-process `all` app on the same database
            page = await client.get("/")
            hashed = re.search(r"/static/(js/app\.[0-9a-f]{12}\.js)", page.text)
            assert hashed is not None, page.text
            for path in [
                "/",
                "/static/" + hashed.group(1),
                "/static/js/app.js",
                "/static/app.css",
                "/static/favicon.svg",
            ]:
                split, one = await client.get(path), await single.get(path)
                assert (split.status_code, one.status_code) == (200, 200), path
                assert split.content == one.content, path
                for name in (
                    "content-type",
                    "cache-control",
                    "etag",
                    "content-security-policy",
                    "x-content-type-options",
                    "referrer-policy",
                    "x-frame-options",
                ):
                    assert split.headers.get(name) == one.headers.get(name), (path, name)
            assert (await client.get("/static/js/app.js")).content == (STATIC / "js" / "app.js").read_bytes()
            unknown_split = await client.get("/api/v1/nope")
            unknown_one = await single.get("/api/v1/nope")
            assert unknown_split.status_code == unknown_one.status_code == 404
            assert {**unknown_split.json(), "request_id": None} == {**unknown_one.json(), "request_id": None}

    async def test_each_service_serves_only_its_paths(self, backend: Backend) -> None:
        topo = topology(backend)
        async with httpx.AsyncClient(timeout=10) as http:
            auth, users = topo.services["auth"][0].url, topo.services["users"][0].url
            tasks, notes = topo.services["tasks"][0].url, topo.services["notifications"][0].url
            assert (await http.get(auth + JWKS)).status_code == 200
            for base, path in [
                (users, JWKS),
                (tasks, "/api/v1/auth/login"),
                (auth, "/api/v1/tasks"),
                (notes, "/api/v1/users/me"),
                (users, "/api/v1/admin/tasks"),
                (tasks, "/api/v1/admin/users"),
            ]:
                assert (await http.get(base + path)).status_code == 404, (base, path)
            for base in (auth, users, tasks, notes):
                assert (await http.get(base + "/ready")).status_code == 200
                assert (await http.get(base + "/metrics")).status_code == 200


class TestKeys:
    async def test_rotation_old_tokens_keep_working_and_each_verifier_learns_the_new_kid_once(
        self, backend: Backend, api: Api, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        topo = topology(backend)
        auth = topo.services["auth"][0]
        old = await api.user("rotate@x.io")
        old_kid = kid_of(old)
        before = jwks_fetches(auth)
        output = keys_cli(topo, tmp_path, "rotate")
        new_kid = output.split()[2]
        assert output == f"signing with {new_kid}\n" and new_kid != old_kid
        new = await login_with_kid(api, "rotate@x.io", new_kid)
        assert kid_of(new) == new_kid
        for instance in topo.services["tasks"]:  # both instances, directly
            for headers in (new, old, new, old):
                r = await client.get(instance.url + "/api/v1/tasks", headers=headers)
                assert r.status_code == 200, r.text
        assert jwks_fetches(auth) - before == 2  # one refetch per tasks instance, not one per request
        published = [k["kid"] for k in (await client.get(JWKS)).json()["keys"]]
        assert published[-2:] == [old_kid, new_kid]
        for headers in (old, new):  # through the gateway, every service
            assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
            assert (await client.get("/api/v1/notifications", headers=headers)).status_code == 200

    async def test_unknown_kids_cause_one_bounded_refetch(
        self, backend: Backend, side: Side, api: Api, client: httpx.AsyncClient
    ) -> None:
        h = await api.user("bogus@x.io")
        me = (await client.get("/api/v1/users/me", headers=h)).json()
        signing = read_key_set(topology(backend).keys_file)[-1]
        now = round(time.time(), 3)

        def forged(kid: str) -> H:
            claims = {
                "sub": me["id"],
                "role": "user",
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": int(now) + 600,
                "iss": "taskhub",
                "aud": "taskhub-api",
            }
            return {
                "Authorization": "Bearer "
                + jwt.encode(claims, signing.private, algorithm="EdDSA", headers={"kid": kid})
            }

        url = side.strict.url + "/api/v1/tasks"
        assert (await client.get(url, headers=h)).status_code == 200  # the signing key is known
        before = jwks_fetches(side.auth)
        for burst in range(2):
            answers = await asyncio.gather(*(client.get(url, headers=forged(f"bogus-{burst}-{i}")) for i in range(30)))
            assert [a.status_code for a in answers] == [401] * 30
            assert {a.json()["detail"] for a in answers} == {"The access token is invalid."}
        assert jwks_fetches(side.auth) - before == 1  # sixty unknown kids: one refetch (30 s apart at most)
        assert (await client.get(url, headers=h)).status_code == 200

    async def test_a_retired_key_is_refused_by_the_signer_at_once_and_by_verifiers_after_their_cache(
        self, backend: Backend, side: Side, api: Api, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        topo = topology(backend)
        if len(read_key_set(topo.keys_file)) < 2:
            keys_cli(topo, tmp_path, "rotate")
        keys = read_key_set(topo.keys_file)
        old, newest = keys[-2], keys[-1]
        await api.register("retire@x.io")
        h = await login_with_kid(api, "retire@x.io", newest.kid)
        claims = jwt.decode(h["Authorization"][7:], options={"verify_signature": False})
        claims["jti"] = uuid.uuid4().hex
        old_token = jwt.encode(claims, old.private, algorithm="EdDSA", headers={"kid": old.kid})
        stale = {"Authorization": f"Bearer {old_token}"}
        eager = side.eager.url + "/api/v1/tasks"
        assert (await client.get(eager, headers=stale)).status_code == 200
        assert keys_cli(topo, tmp_path, "retire", "--kid", old.kid, "--force") == f"retired {old.kid}\n"
        assert await status_becomes(client, eager, stale, 401) == 401  # after its 1 s JWKS cache
        r = await client.get(eager, headers=stale)
        assert r.json()["detail"] == "The access token is invalid."
        assert (await client.get(eager, headers=h)).status_code == 200
        # The auth service itself (which re-reads the key file within a second) refuses it too.
        logout = topo.services["auth"][0].url + "/api/v1/auth/logout"
        deadline = time.monotonic() + 10
        while (status := (await client.post(logout, json={}, headers=stale)).status_code) != 401:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.2)

    async def test_auth_service_down_tokens_keep_working_and_login_is_a_clean_503(
        self, backend: Backend, side: Side, api: Api, client: httpx.AsyncClient
    ) -> None:
        topo = topology(backend)
        h = await api.user("down@x.io")
        eager = side.eager.url + "/api/v1/tasks"
        assert (await client.get(eager, headers=h)).status_code == 200
        side.auth.stop()
        await asyncio.sleep(1.1)  # past the eager verifier's 1 s cache: its refetch now fails
        for _ in range(3):  # verification is local: issued tokens keep working
            assert (await client.get(eager, headers=h)).status_code == 200
        # A gateway whose auth upstream is the stopped service: login fails cleanly, tasks still work.
        servers: dict[str, list[str]] = {
            "auth": [side.auth.url.removeprefix("http://")],
            **{
                name: [s.url.removeprefix("http://") for s in topo.services[name]]
                for name in ("users", "tasks", "notifications")
            },
        }
        gateway = start_gateway(servers, side.tmp / "gateway-auth-down")
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as outside:
                r = await outside.post("/api/v1/auth/login", json={"email": "down@x.io", "password": "x" * 10})
                assert r.status_code == 503
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"] == "5"
                body: dict[str, Any] = json.loads(r.content)
                assert body == {
                    "type": "https://taskhub.dev/problems/service-unavailable",
                    "title": "Service Unavailable",
                    "status": 503,
                    "detail": "The service behind this path is unavailable; try again shortly.",
                    "instance": "/api/v1/auth/login",
                    "request_id": None,
                }
                assert (await outside.get("/api/v1/tasks", headers=h)).status_code == 200
                assert (await outside.get("/api/v1/users/me", headers=h)).status_code == 200
        finally:
            gateway.stop()
