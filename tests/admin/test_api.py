"""``/admin`` (SPEC "Administration")."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PASSWORD, Api
from tests.helpers import promote_to_admin

pytestmark = pytest.mark.asyncio
H = dict[str, str]


@pytest.fixture
async def admin(app: FastAPI, api: Api) -> H:
    await api.register("root@x.io", name="Root")
    await promote_to_admin(app, "root@x.io")
    return {"Authorization": f"Bearer {(await api.login('root@x.io'))['access_token']}"}


class TestAccess:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/admin/users"),
            ("GET", "/api/v1/admin/tasks"),
            ("PATCH", "/api/v1/admin/users/01900000-0000-7000-8000-000000000000"),
            ("DELETE", "/api/v1/admin/users/01900000-0000-7000-8000-000000000000"),
        ],
    )
    async def test_users_get_403(self, api: Api, client: httpx.AsyncClient, method: str, path: str) -> None:
        h = await api.user("plain@x.io")
        r = await client.request(method, path, headers=h, json={"role": "admin"} if method == "PATCH" else None)
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
        assert (await client.get("/api/v1/admin/users")).status_code == 401


class TestUsers:
    async def test_list_search_and_page(self, api: Api, client: httpx.AsyncClient, admin: H) -> None:
        for i in range(5):
            await api.register(f"member{i}@x.io", name=f"Member {i}")
        await api.register("other@y.io", name="Zed")
        body = (await client.get("/api/v1/admin/users?limit=2", headers=admin)).json()
        assert (body["total"], body["page"], len(body["items"])) == (7, 1, 2)
        assert body["items"][0]["email"] == "other@y.io"  # newest first
        assert "password_hash" not in body["items"][0]
        assert (await client.get("/api/v1/admin/users?q=ZED", headers=admin)).json()["total"] == 1
        assert (await client.get("/api/v1/admin/users?q=", headers=admin)).json()["total"] == 7  # empty = all
        assert (await client.get("/api/v1/admin/users?q=member", headers=admin)).json()["total"] == 5
        assert (await client.get("/api/v1/admin/users?q=%40y.io", headers=admin)).json()["total"] == 1
        seen: list[str] = []
        body = (await client.get("/api/v1/admin/users?limit=3", headers=admin)).json()
        seen += [u["id"] for u in body["items"]]
        while body["next_cursor"]:
            body = (await client.get(f"/api/v1/admin/users?limit=3&cursor={body['next_cursor']}", headers=admin)).json()
            assert body["total"] is None
            seen += [u["id"] for u in body["items"]]
        assert len(seen) == len(set(seen)) == 7
        assert (await client.get("/api/v1/admin/users?limit=101", headers=admin)).status_code == 422

    async def test_promote_and_demote(self, api: Api, client: httpx.AsyncClient, admin: H) -> None:
        user = await api.register("p@x.io")
        r = await client.patch(f"/api/v1/admin/users/{user['id']}", json={"role": "admin"}, headers=admin)
        assert r.status_code == 200 and r.json()["role"] == "admin"
        h = {"Authorization": f"Bearer {(await api.login('p@x.io'))['access_token']}"}
        assert (await client.get("/api/v1/admin/users", headers=h)).status_code == 200
        r = await client.patch(f"/api/v1/admin/users/{user['id']}", json={"role": "user"}, headers=admin)
        assert r.json()["role"] == "user"
        assert (await client.get("/api/v1/admin/users", headers=h)).status_code == 403  # role read fresh

    async def test_deactivate_invalidates_tokens(self, api: Api, client: httpx.AsyncClient, admin: H) -> None:
        user = await api.register("d@x.io")
        tokens = await api.login("d@x.io")
        h = {"Authorization": f"Bearer {tokens['access_token']}"}
        r = await client.patch(f"/api/v1/admin/users/{user['id']}", json={"is_active": False}, headers=admin)
        assert r.status_code == 200 and r.json()["is_active"] is False
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 401
        assert (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).status_code == 401
        r = await client.patch(f"/api/v1/admin/users/{user['id']}", json={"is_active": True}, headers=admin)
        assert r.json()["is_active"] is True
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 401  # old tokens stay dead
        await api.login("d@x.io")

    @pytest.mark.parametrize("body", [{"role": "user"}, {"is_active": False}])
    async def test_last_admin_cannot_remove_themselves(
        self, api: Api, client: httpx.AsyncClient, admin: H, body: dict[str, object]
    ) -> None:
        me = (await client.get("/api/v1/users/me", headers=admin)).json()
        r = await client.patch(f"/api/v1/admin/users/{me['id']}", json=body, headers=admin)
        assert r.status_code == 409
        assert r.json()["title"] == "Last active admin"
        assert (await client.delete(f"/api/v1/admin/users/{me['id']}", headers=admin)).status_code == 409
        r = await client.request("DELETE", "/api/v1/users/me", json={"current_password": PASSWORD}, headers=admin)
        assert r.status_code == 409
        still = (await client.get("/api/v1/users/me", headers=admin)).json()
        assert (still["role"], still["is_active"]) == ("admin", True)

    async def test_with_two_admins_one_may_step_down(self, api: Api, client: httpx.AsyncClient, admin: H) -> None:
        other = await api.register("second@x.io")
        await client.patch(f"/api/v1/admin/users/{other['id']}", json={"role": "admin"}, headers=admin)
        me = (await client.get("/api/v1/users/me", headers=admin)).json()
        r = await client.patch(f"/api/v1/admin/users/{me['id']}", json={"role": "user"}, headers=admin)
        assert r.status_code == 200

    async def test_delete_user_and_404(self, api: Api, client: httpx.AsyncClient, admin: H) -> None:
        user = await api.register("bye@x.io")
        assert (await client.delete(f"/api/v1/admin/users/{user['id']}", headers=admin)).status_code == 204
        assert (await client.delete(f"/api/v1/admin/users/{user['id']}", headers=admin)).status_code == 404
        r = await client.patch(f"/api/v1/admin/users/{user['id']}", json={"role": "admin"}, headers=admin)
        assert r.status_code == 404

    async def test_patch_validation(self, api: Api, client: httpx.AsyncClient, admin: H) -> None:
        user = await api.register("v@x.io")
        for body, loc in (
            ({"role": "root"}, "role"),
            ({"is_active": None}, "is_active"),
            ({"email": "x@x.io"}, "email"),
        ):
            r = await client.patch(f"/api/v1/admin/users/{user['id']}", json=body, headers=admin)
            assert r.status_code == 422
            assert r.json()["errors"][0]["loc"] == ["body", loc]


class TestTasks:
    async def test_all_tasks_and_owner_filter(self, api: Api, client: httpx.AsyncClient, admin: H) -> None:
        a = await api.user("a@x.io")
        b = await api.user("b@x.io")
        await api.task(a, title="a1", priority="high")
        await api.task(a, title="a2")
        await api.task(b, title="b1", priority="high")
        body = (await client.get("/api/v1/admin/tasks", headers=admin)).json()
        assert sorted(t["title"] for t in body["items"]) == ["a1", "a2", "b1"]
        b_id = (await client.get("/api/v1/users/me", headers=b)).json()["id"]
        only_b = (await client.get(f"/api/v1/admin/tasks?owner_id={b_id}", headers=admin)).json()
        assert [t["title"] for t in only_b["items"]] == ["b1"]
        high = (await client.get("/api/v1/admin/tasks?priority=high&sort=created_at", headers=admin)).json()
        assert [t["title"] for t in high["items"]] == ["a1", "b1"]


class TestMalformedQueryIs422:
    @pytest.mark.parametrize(
        ("path", "query", "field"),
        [
            ("/api/v1/admin/users", "page=10000000000000000000", "page"),
            ("/api/v1/admin/users", "q=a%00", "q"),
            ("/api/v1/admin/tasks", "q=a%00", "q"),
            ("/api/v1/admin/tasks", "due_after=0001-01-01T00:00:00%2B05:00", "due_after"),
            # a cursor whose created_at overflows when converted to UTC
            (
                "/api/v1/admin/users",
                "cursor=eyJzIjoiLWNyZWF0ZWRfYXQiLCJrIjp7InYiOiIwMDAxLTAxLTAxVDAwOjAwOjAwKzA1OjAwIiwiaWQiOiIwMTkwMDAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDAifX0",
                "cursor",
            ),
        ],
    )
    async def test_names_the_parameter(
        self, client: httpx.AsyncClient, admin: H, path: str, query: str, field: str
    ) -> None:
        r = await client.get(f"{path}?{query}", headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["query", field]
