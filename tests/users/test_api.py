"""``/users/me`` (SPEC "Users")."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PASSWORD, Api
from tests.helpers import promote_to_admin

pytestmark = pytest.mark.asyncio


class TestMe:
    async def test_read(self, api: Api, client: httpx.AsyncClient) -> None:
        created = await api.register("u1@x.io", name="Una")
        tokens = await api.login("u1@x.io")
        r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert r.status_code == 200
        assert r.json() == created

    async def test_update_name(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("u2@x.io")
        r = await client.patch("/api/v1/users/me", json={"name": "  New Name "}, headers=h)
        assert r.status_code == 200
        assert r.json()["name"] == "New Name"
        assert r.json()["updated_at"] >= r.json()["created_at"]

    async def test_update_rejects_nul_and_null_naming_the_field(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("me@x.io")
        for body, loc in (({"name": "a\u0000"}, "name"), ({"name": None}, "name"), ({"email": None}, "email")):
            r = await client.patch("/api/v1/users/me", json=body, headers=h)
            assert r.status_code == 422, body
            assert r.json()["errors"][0]["loc"] == ["body", loc]

    async def test_role_in_body_is_rejected_and_harmless(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("u3@x.io")
        r = await client.patch("/api/v1/users/me", json={"name": "x", "role": "admin"}, headers=h)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", "role"]
        me = (await client.get("/api/v1/users/me", headers=h)).json()
        assert (me["role"], me["name"]) == ("user", "Test User")

    async def test_email_change_needs_current_password(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("u4@x.io")
        r = await client.patch("/api/v1/users/me", json={"email": "new@x.io"}, headers=h)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", "current_password"]
        r = await client.patch(
            "/api/v1/users/me", json={"email": "new@x.io", "current_password": "wrong pass"}, headers=h
        )
        assert r.status_code == 401
        r = await client.patch("/api/v1/users/me", json={"email": "New@x.io", "current_password": PASSWORD}, headers=h)
        assert r.status_code == 200
        assert r.json()["email"] == "New@x.io"
        await api.login("new@X.io")

    async def test_email_change_to_taken_email_is_409(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("taken@x.io")
        h = await api.user("u5@x.io")
        r = await client.patch(
            "/api/v1/users/me", json={"email": "TAKEN@x.io", "current_password": PASSWORD}, headers=h
        )
        assert r.status_code == 409

    async def test_password_change_rules(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("u6@x.io")
        wrong = await client.post(
            "/api/v1/users/me/password",
            json={"current_password": "nope nope", "new_password": "another good one"},
            headers=h,
        )
        assert wrong.status_code == 401
        weak = await client.post(
            "/api/v1/users/me/password", json={"current_password": PASSWORD, "new_password": "password1"}, headers=h
        )
        assert weak.status_code == 422
        assert weak.json()["errors"][0]["loc"] == ["body", "new_password"]
        await api.login("u6@x.io")  # old password still works: nothing changed

    async def test_delete_account_removes_tasks(self, app: FastAPI, api: Api, client: httpx.AsyncClient) -> None:
        admin = await api.user("root@x.io")
        await promote_to_admin(app, "root@x.io")
        h = await api.user("u7@x.io")
        await api.task(h, title="gone soon")
        owner = (await client.get("/api/v1/users/me", headers=h)).json()["id"]
        bad = await client.request("DELETE", "/api/v1/users/me", json={"current_password": "wrong one"}, headers=h)
        assert bad.status_code == 401
        r = await client.request("DELETE", "/api/v1/users/me", json={"current_password": PASSWORD}, headers=h)
        assert r.status_code == 204
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 401
        bad_login = await client.post("/api/v1/auth/login", json={"email": "u7@x.io", "password": PASSWORD})
        assert bad_login.status_code == 401
        all_tasks = (await client.get(f"/api/v1/admin/tasks?owner_id={owner}", headers=admin)).json()
        assert all_tasks["total"] == 0
        await api.register("u7@x.io")  # the email is free again


BAD_ZONES = [
    ("Mars/Olympus_Mons", "value_error"),
    ("europe/berlin", "value_error"),  # names are case-sensitive, as in the tz database
    ("+01:00", "value_error"),
    ("localtime", "value_error"),  # host-dependent
    ("../../etc/passwd", "value_error"),
    ("", "too_short"),
    ("A" * 65, "too_long"),
    ("Europe/Berlin\u0000", "value_error"),
    (1, "string_type"),
]


class TestTimeZone:
    async def test_defaults_to_utc_and_changes(self, api: Api, client: httpx.AsyncClient) -> None:
        created = await api.register("tz1@x.io")
        assert created["time_zone"] == "UTC"
        h = {"Authorization": f"Bearer {(await api.login('tz1@x.io'))['access_token']}"}
        r = await client.patch("/api/v1/users/me", json={"time_zone": "Asia/Kolkata"}, headers=h)
        assert r.status_code == 200, r.text
        assert (r.json()["time_zone"], r.json()["name"]) == ("Asia/Kolkata", "Test User")
        assert r.json()["updated_at"] > created["updated_at"]
        me = (await client.get("/api/v1/users/me", headers=h)).json()
        assert me["time_zone"] == "Asia/Kolkata"
        both = await client.patch("/api/v1/users/me", json={"time_zone": "UTC", "name": "Tee"}, headers=h)
        assert (both.json()["time_zone"], both.json()["name"]) == ("UTC", "Tee")

    @pytest.mark.parametrize(("zone", "error_type"), [*BAD_ZONES, (None, "value_error")])
    async def test_bad_zone_is_422_naming_the_field(
        self, api: Api, client: httpx.AsyncClient, zone: object, error_type: str
    ) -> None:
        h = await api.user("tz2@x.io")
        r = await client.patch("/api/v1/users/me", json={"time_zone": zone}, headers=h)
        assert r.status_code == 422, r.text
        (error,) = r.json()["errors"]
        assert (error["loc"], error["type"]) == (["body", "time_zone"], error_type)
        assert (await client.get("/api/v1/users/me", headers=h)).json()["time_zone"] == "UTC"

    async def test_register_with_a_zone(self, client: httpx.AsyncClient) -> None:
        body = {"email": "tz3@x.io", "password": PASSWORD, "name": "T", "time_zone": "America/Sao_Paulo"}
        r = await client.post("/api/v1/auth/register", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["time_zone"] == "America/Sao_Paulo"

    @pytest.mark.parametrize(("zone", "error_type"), BAD_ZONES)
    async def test_register_with_a_bad_zone_is_422(
        self, client: httpx.AsyncClient, zone: object, error_type: str
    ) -> None:
        body = {"email": "tz4@x.io", "password": PASSWORD, "name": "T", "time_zone": zone}
        r = await client.post("/api/v1/auth/register", json=body)
        assert r.status_code == 422, r.text
        (error,) = r.json()["errors"]
        assert (error["loc"], error["type"]) == (["body", "time_zone"], error_type)
        assert (
            await client.post("/api/v1/auth/login", json={"email": "tz4@x.io", "password": PASSWORD})
        ).status_code == 401
