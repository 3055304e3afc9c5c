"""The OpenAPI document describes every response the service sends, checked response by response.

The fuzzer (``tests/fuzz``) finds what nobody thought of, but with a small budget it rarely meets
a stale ``If-Match`` or a rate limit. Here every documented error path is provoked on purpose and
its real response is checked by Schemathesis' own conformance checks against ``/openapi.json``:
status code, content type, body schema and required headers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from taskhub.config import Settings
from taskhub.core.errors import PROBLEM_JSON
from tests.conftest import PASSWORD, Api, client_for
from tests.helpers import promote_to_admin

pytestmark = pytest.mark.asyncio

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


class Conformance:
    """Check real responses against the app's own document."""

    def __init__(self, app: FastAPI) -> None:
        self.schema = schemathesis.openapi.from_dict(app.openapi())
        self.seen: set[tuple[str, str, int]] = set()

    def check(self, method: str, template: str, response: httpx.Response, status: int) -> None:
        """``response`` (to ``method template``) has ``status`` and conforms to the document."""
        assert response.status_code == status, response.text
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        match = re.fullmatch(pattern, response.request.url.path)
        assert match is not None, (template, response.request.url.path)
        case = self.schema[template][method.upper()].Case(path_parameters=match.groupdict())
        # A documented 503 is the service working as designed; every other check still applies.
        checks = [c for c in CHECKS if c is not not_a_server_error] if status == 503 else CHECKS
        case.validate_response(response, checks=checks)
        self.seen.add((method.upper(), template, status))


async def test_openapi_lists_problem_types_and_no_fastapi_defaults(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                assert response["headers"]["X-Request-ID"]["required"] is True
                if status.startswith(("4", "5")) and path.startswith("/api/"):
                    assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)
    task_links = document["paths"]["/api/v1/tasks"]["post"]["responses"]["201"]["links"]
    assert task_links["update"] == {
        "operationId": "update_task",
        "parameters": {"task_id": "$response.body#/id", "header.If-Match": "$response.header.ETag"},
    }


async def test_operation_ids_are_endpoint_names_and_every_link_names_one(client: httpx.AsyncClient) -> None:
    """The links (and the fuzzers' filters) name operations by id; ids are the endpoint functions'
    names wherever a route is mounted (the service routers included)."""
    document = (await client.get("/openapi.json")).json()
    ids = {
        (method, path): operation["operationId"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert ids[("get", "/api/v1/tasks/{task_id}")] == "get_task"
    assert ids[("post", "/api/v1/auth/logout")] == "logout"
    assert ids[("post", "/api/v1/auth/logout-all")] == "logout_all"
    assert ids[("get", "/health")] == "health"
    assert len(set(ids.values())) == len(ids)
    linked = {
        link["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    }
    assert linked == {"get_task", "update_task", "replace_task", "delete_task"}
    assert linked <= set(ids.values())


async def test_every_task_response_is_documented(app: FastAPI, api: Api, client: httpx.AsyncClient) -> None:
    doc = Conformance(app)
    h = await api.user("doc@x.io")
    one, many = "/api/v1/tasks/{task_id}", "/api/v1/tasks"

    created = await client.post(many, json={"title": "t"}, headers={**h, "Idempotency-Key": "k1"})
    doc.check("post", many, created, 201)
    task_id = created.json()["id"]
    doc.check("post", many, await client.post(many, json={"title": "t"}, headers={**h, "Idempotency-Key": "k1"}), 201)
    doc.check("post", many, await client.post(many, json={"title": "u"}, headers={**h, "Idempotency-Key": "k1"}), 422)
    doc.check("post", many, await client.post(many, json={"title": ""}, headers=h), 422)
    doc.check(
        "post", many, await client.post(many, content=b"{", headers={**h, "Content-Type": "application/json"}), 400
    )
    doc.check("post", many, await client.post(many, content=b"t", headers={**h, "Content-Type": "text/plain"}), 415)
    big = b'{"title": "' + b"x" * 1_100_000 + b'"}'
    doc.check(
        "post", many, await client.post(many, content=big, headers={**h, "Content-Type": "application/json"}), 413
    )
    doc.check("post", many, await client.post(many, json={"title": "t"}), 401)
    doc.check("post", many, await client.post(many, json={"title": "t"}, headers={"Authorization": "Bearer x"}), 401)

    doc.check("get", many, await client.get(many, headers=h), 200)
    doc.check("get", many, await client.get(many, params={"limit": 0}, headers=h), 422)
    doc.check("get", "/api/v1/tasks/stats", await client.get("/api/v1/tasks/stats", headers=h), 200)

    path = f"/api/v1/tasks/{task_id}"
    got = await client.get(path, headers=h)
    doc.check("get", one, got, 200)
    doc.check("get", one, await client.get(path, headers={**h, "If-None-Match": got.headers["ETag"]}), 304)
    doc.check("get", one, await client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=h), 404)
    doc.check("get", one, await client.get("/api/v1/tasks/not-a-uuid", headers=h), 422)
    stale = {**h, "If-Match": '"0"'}
    doc.check("patch", one, await client.patch(path, json={"title": "u"}, headers=stale), 412)
    doc.check("put", one, await client.put(path, json={"title": "u"}, headers=stale), 412)
    doc.check("delete", one, await client.delete(path, headers=stale), 412)
    doc.check("patch", one, await client.patch(path, json={"title": "u"}, headers=h), 200)
    doc.check("put", one, await client.put(path, json={"title": "v"}, headers=h), 200)
    doc.check("patch", one, await client.patch(path, json={"status": None}, headers=h), 422)
    doc.check("delete", one, await client.delete(path, headers=h), 204)
    doc.check("delete", one, await client.delete(path, headers=h), 404)
    doc.check("patch", one, await client.patch(path, json={"title": "u"}, headers=h), 404)
    doc.check("put", one, await client.put(path, json={"title": "u"}, headers=h), 404)


async def test_every_account_response_is_documented(app: FastAPI, api: Api, client: httpx.AsyncClient) -> None:
    doc = Conformance(app)
    body = {"email": "acct@x.io", "password": PASSWORD, "name": "A"}
    doc.check("post", "/api/v1/auth/register", await client.post("/api/v1/auth/register", json=body), 201)
    doc.check("post", "/api/v1/auth/register", await client.post("/api/v1/auth/register", json=body), 409)
    login = {"email": "acct@x.io", "password": PASSWORD}
    tokens = await client.post("/api/v1/auth/login", json=login)
    doc.check("post", "/api/v1/auth/login", tokens, 200)
    wrong = {"email": "acct@x.io", "password": "not the password"}
    doc.check("post", "/api/v1/auth/login", await client.post("/api/v1/auth/login", json=wrong), 401)
    form = {"username": "acct@x.io", "password": PASSWORD}
    doc.check("post", "/api/v1/auth/token", await client.post("/api/v1/auth/token", data=form), 200)
    doc.check("post", "/api/v1/auth/token", await client.post("/api/v1/auth/token", json=form), 415)
    refresh = {"refresh_token": tokens.json()["refresh_token"]}
    doc.check("post", "/api/v1/auth/refresh", await client.post("/api/v1/auth/refresh", json=refresh), 200)
    doc.check("post", "/api/v1/auth/refresh", await client.post("/api/v1/auth/refresh", json=refresh), 401)
    h = {"Authorization": f"Bearer {(await api.login('acct@x.io'))['access_token']}"}
    me = "/api/v1/users/me"
    doc.check("get", me, await client.get(me, headers=h), 200)
    doc.check("patch", me, await client.patch(me, json={"name": "B"}, headers=h), 200)
    doc.check("patch", me, await client.patch(me, json={"role": "admin"}, headers=h), 422)
    await api.register("taken@x.io")
    taken = {"email": "taken@x.io", "current_password": PASSWORD}
    doc.check("patch", me, await client.patch(me, json=taken, headers=h), 409)
    pw = "/api/v1/users/me/password"
    wrong_pw = {"current_password": "nope nope", "new_password": "another long one"}
    doc.check("post", pw, await client.post(pw, json=wrong_pw, headers=h), 401)
    doc.check("delete", me, await client.request("DELETE", me, json={"current_password": "x"}, headers=h), 401)
    doc.check("post", "/api/v1/auth/logout", await client.post("/api/v1/auth/logout", headers=h), 204)
    doc.check("get", me, await client.get(me, headers=h), 401)


async def test_every_admin_response_is_documented(app: FastAPI, api: Api, client: httpx.AsyncClient) -> None:
    doc = Conformance(app)
    user = await api.user("plain@x.io")
    await api.register("boss@x.io")
    await promote_to_admin(app, "boss@x.io")
    admin = {"Authorization": f"Bearer {(await api.login('boss@x.io'))['access_token']}"}
    users, one = "/api/v1/admin/users", "/api/v1/admin/users/{user_id}"
    doc.check("get", users, await client.get(users, headers=user), 403)
    doc.check("get", users, await client.get(users, headers=admin), 200)
    doc.check("get", "/api/v1/admin/tasks", await client.get("/api/v1/admin/tasks", headers=admin), 200)
    boss_id = (await client.get("/api/v1/users/me", headers=admin)).json()["id"]
    doc.check("patch", one, await client.patch(f"{users}/{boss_id}", json={"role": "user"}, headers=admin), 409)
    doc.check("patch", one, await client.patch(f"{users}/{uuid.uuid4()}", json={"role": "user"}, headers=admin), 404)
    doc.check("delete", one, await client.delete(f"{users}/{boss_id}", headers=admin), 409)
    plain_id = (await client.get("/api/v1/users/me", headers=user)).json()["id"]
    doc.check("delete", one, await client.delete(f"{users}/{plain_id}", headers=admin), 204)
    doc.check("delete", one, await client.delete(f"{users}/{plain_id}", headers=admin), 404)
    me = "/api/v1/users/me"
    last = {"current_password": PASSWORD}
    doc.check("delete", me, await client.request("DELETE", me, json=last, headers=admin), 409)
    doc.check("get", "/health", await client.get("/health"), 200)
    doc.check("get", "/ready", await client.get("/ready"), 200)


async def test_rate_limited_and_busy_answers_are_documented(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await app_factory(settings_factory(rate_limit_enabled=True, rate_limit_user="2 per minute"))
    doc = Conformance(app)
    async with client_for(app) as client:
        h = await Api(client).user("busy@x.io")
        stats = "/api/v1/tasks/stats"
        first = await client.get(stats, headers=h)
        doc.check("get", stats, first, 200)
        assert first.headers["RateLimit-Limit"] == "2"

        from taskhub.tasks import service

        async def exhausted(*args: Any, **kwargs: Any) -> None:
            raise PoolTimeoutError("QueuePool limit reached")

        monkeypatch.setattr(service, "stats", exhausted)
        doc.check("get", stats, await client.get(stats, headers=h), 503)
        doc.check("get", stats, await client.get(stats, headers=h), 429)
