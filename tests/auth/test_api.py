"""Registration, login, tokens, refresh rotation, logout (SPEC "Authentication")."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from tests.conftest import JWT_SECRET, PASSWORD, AccessTokenKey, Api
from tests.helpers import promote_to_admin

pytestmark = pytest.mark.asyncio


class TestRegister:
    async def test_returns_user_without_secret(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/api/v1/auth/register", json={"email": "  Ann@Example.io ", "password": PASSWORD, "name": " Ann "}
        )
        assert r.status_code == 201
        body = r.json()
        assert set(body) == {"id", "email", "name", "role", "is_active", "time_zone", "created_at", "updated_at"}
        assert body["time_zone"] == "UTC"
        assert body["email"] == "Ann@Example.io"
        assert body["name"] == "Ann"
        assert body["role"] == "user"
        assert body["is_active"] is True
        assert uuid.UUID(body["id"]).version == 7
        assert body["created_at"].endswith("Z")
        assert "access_token" not in body

    async def test_email_unique_case_insensitive(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("A@x.io")
        r = await client.post("/api/v1/auth/register", json={"email": "a@X.IO", "password": PASSWORD, "name": "B"})
        assert r.status_code == 409
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "Email already registered"

    async def test_email_unique_after_nfkc(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("test@x.io")
        # Fullwidth letters normalize (NFKC) to ASCII: same account.
        r = await client.post(
            "/api/v1/auth/register", json={"email": "ｔｅｓｔ@x.io", "password": PASSWORD, "name": "B"}
        )
        assert r.status_code == 409

    @pytest.mark.parametrize(
        ("password", "message"),
        [
            ("short", "at least 8"),
            ("x" * 129, "at most 128"),
            ("password123", "too common"),
            ("iloveyou", "too common"),
        ],
    )
    async def test_password_rules(self, client: httpx.AsyncClient, password: str, message: str) -> None:
        r = await client.post("/api/v1/auth/register", json={"email": "p@x.io", "password": password, "name": "P"})
        assert r.status_code == 422
        body = r.json()
        assert body["errors"][0]["loc"] == ["body", "password"]
        assert message in body["errors"][0]["msg"]
        assert message in body["detail"]

    async def test_password_equal_to_email_rejected(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/api/v1/auth/register", json={"email": "long.name@x.io", "password": "Long.Name@x.io", "name": "P"}
        )
        assert r.status_code == 422
        assert "same as the email" in r.json()["errors"][0]["msg"]

    async def test_password_of_128_chars_accepted(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/register", json={"email": "l@x.io", "password": "ab" * 64, "name": "L"})
        assert r.status_code == 201

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"email": "bad", "password": PASSWORD, "name": "N"}, ["body", "email"]),
            ({"email": "n@x.io", "password": PASSWORD, "name": "   "}, ["body", "name"]),
            ({"email": "n@x.io", "password": PASSWORD, "name": "n" * 101}, ["body", "name"]),
            ({"email": "n@x.io", "password": PASSWORD}, ["body", "name"]),
            ({"email": "n@x.io", "password": PASSWORD, "name": "N", "role": "admin"}, ["body", "role"]),
            ({"email": "n@x.io", "password": PASSWORD, "name": "a\u0000b"}, ["body", "name"]),
            # NFKC expands each U+FDFA to 18 characters: too long once normalized
            ({"email": "\ufdfa" * 20 + "@example.com", "password": PASSWORD, "name": "L"}, ["body", "email"]),
        ],
    )
    async def test_invalid_fields_named(self, client: httpx.AsyncClient, body: dict[str, str], loc: list[str]) -> None:
        r = await client.post("/api/v1/auth/register", json=body)
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["loc"] for e in r.json()["errors"]] == [loc]


class TestLogin:
    async def test_returns_token_pair_with_claims(self, api: Api, token_key: AccessTokenKey) -> None:
        user = await api.register("c@x.io")
        tokens = await api.login("C@X.io")
        assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert tokens["token_type"] == "bearer"
        assert tokens["expires_in"] == 900
        claims = token_key.decode(tokens["access_token"])
        assert set(claims) == {"sub", "role", "jti", "iat", "exp", "iss", "aud", "sid"}
        assert claims["sub"] == user["id"]
        assert claims["role"] == "user"
        assert 900 <= claims["exp"] - claims["iat"] < 901  # never shorter than the configured lifetime

    async def test_wrong_password_and_unknown_email_look_the_same(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("d@x.io")
        wrong = await client.post("/api/v1/auth/login", json={"email": "d@x.io", "password": "not the password"})
        unknown = await client.post("/api/v1/auth/login", json={"email": "nobody@x.io", "password": "not the password"})
        assert wrong.status_code == unknown.status_code == 401
        strip = lambda b: {k: v for k, v in b.items() if k != "request_id"}
        assert strip(wrong.json()) == strip(unknown.json())
        assert wrong.headers["www-authenticate"].startswith("Bearer")

    async def test_nul_in_email_is_401_like_an_unknown_account(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/login", json={"email": "a\u0000@x.io", "password": "whatever1"})
        assert r.status_code == 401
        r = await client.post("/api/v1/auth/token", data={"username": "a\u0000@x.io", "password": "whatever1"})
        assert r.status_code == 401

    async def test_oauth2_form_login(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("e@x.io")
        r = await client.post("/api/v1/auth/token", data={"username": "e@x.io", "password": PASSWORD})
        assert r.status_code == 200
        assert r.json()["token_type"] == "bearer"
        me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert me.json()["email"] == "e@x.io"

    async def test_deactivated_user_gets_403(self, api: Api, client: httpx.AsyncClient, app: object) -> None:
        admin_headers = await api.user("root@x.io")
        await promote_to_admin(app, "root@x.io")  # type: ignore[arg-type]
        victim = await api.register("f@x.io")
        r = await client.patch(f"/api/v1/admin/users/{victim['id']}", json={"is_active": False}, headers=admin_headers)
        assert r.status_code == 200
        r = await client.post("/api/v1/auth/login", json={"email": "f@x.io", "password": PASSWORD})
        assert r.status_code == 403
        assert r.json()["title"] == "Account disabled"
        bad = await client.post("/api/v1/auth/login", json={"email": "f@x.io", "password": "wrong password!"})
        assert bad.status_code == 401  # no account-state leak without the right password


class TestAccessTokens:
    async def test_missing_token_is_401_with_challenge(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/api/v1/users/me")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["status"] == 401

    @pytest.mark.parametrize("algorithm", ["HS512", "none"])
    async def test_other_algorithms_refused(self, api: Api, client: httpx.AsyncClient, algorithm: str) -> None:
        user = await api.register("g@x.io")
        now = int(time.time())
        claims = {
            "sub": user["id"],
            "role": "admin",
            "jti": "j",
            "iat": now,
            "exp": now + 60,
            "iss": "taskhub",
            "aud": "taskhub-api",
        }
        key = None if algorithm == "none" else JWT_SECRET
        token = jwt.encode(claims, key, algorithm=algorithm)
        r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401

    async def test_expired_and_wrong_audience_refused(
        self, api: Api, client: httpx.AsyncClient, token_key: AccessTokenKey
    ) -> None:
        user = await api.register("h@x.io")
        now = int(time.time())
        base = {"sub": user["id"], "role": "user", "jti": "j", "iss": "taskhub", "aud": "taskhub-api"}
        expired = token_key.encode({**base, "iat": now - 100, "exp": now - 10})
        other_aud = token_key.encode({**base, "aud": "other", "iat": now, "exp": now + 60})
        for token, detail in ((expired, "expired"), (other_aud, "invalid")):
            r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
            assert detail in r.json()["detail"]


class TestRefresh:
    async def test_rotation_and_reuse_revokes_family(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("i@x.io")
        first = await api.login("i@x.io")
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert r.status_code == 200
        second = r.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        # Replaying the used token is theft: 401 and the whole family dies, including `second`.
        replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert replay.status_code == 401
        assert replay.json()["title"] == "Refresh token reuse detected"
        after = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert after.status_code == 401
        # Another login (another family) is untouched.
        other = await api.login("i@x.io")
        ok = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
        assert ok.status_code == 200

    async def test_reuse_ends_the_access_tokens_of_the_family(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("theft@x.io")
        first = await api.login("theft@x.io")
        other = await api.login("theft@x.io")
        second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        for token in (first["access_token"], second["access_token"]):  # prime the read-path auth cache
            r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
        reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401
        for token in (first["access_token"], second["access_token"]):
            r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
        r = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {other['access_token']}"})
        assert r.status_code == 200  # another login is another family

    async def test_unknown_refresh_token(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
        assert r.status_code == 401
        r = await client.post("/api/v1/auth/refresh")
        assert r.status_code == 401

    async def test_cookie_is_httponly_strict_and_accepted(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("j@x.io")
        r = await client.post("/api/v1/auth/login", json={"email": "j@x.io", "password": PASSWORD})
        cookie = r.headers["set-cookie"]
        assert "taskhub_refresh=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/api/v1/auth" in cookie
        refreshed = await client.post("/api/v1/auth/refresh")  # cookie only, empty body
        assert refreshed.status_code == 200
        assert refreshed.json()["refresh_token"] != r.json()["refresh_token"]

    async def test_expired_refresh_token(self, app_factory: object, settings_factory: object) -> None:
        from tests.conftest import client_for

        app = await app_factory(settings_factory(refresh_token_ttl=1))  # type: ignore[operator]
        async with client_for(app) as client:
            api = Api(client)
            await api.register("k@x.io")
            tokens = await api.login("k@x.io")
            import asyncio

            await asyncio.sleep(1.2)
            r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 401
            assert "expired" in r.json()["detail"]


class TestLogout:
    async def test_revokes_access_token_and_family(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("l@x.io")
        tokens = await api.login("l@x.io")
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
        r = await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers)
        assert r.status_code == 204
        r = await client.get("/api/v1/users/me", headers=headers)
        assert r.status_code == 401
        assert "revoked" in r.json()["detail"]
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 401

    async def test_without_refresh_token_revokes_the_family(self, api: Api, client: httpx.AsyncClient) -> None:
        """A non-browser client that sends neither the refresh token nor the cookie still ends its session."""
        await api.register("fam@x.io")
        tokens = await api.login("fam@x.io")
        client.cookies.clear()
        h = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.post("/api/v1/auth/logout", headers=h)).status_code == 204
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 401

    async def test_logout_needs_a_token(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/v1/auth/logout")).status_code == 401


class TestInvalidation:
    async def test_password_change_invalidates_earlier_tokens(self, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("m@x.io")
        old = await api.login("m@x.io")
        headers = {"Authorization": f"Bearer {old['access_token']}"}
        r = await client.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
            headers=headers,
        )
        assert r.status_code == 204
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert r.status_code == 401
        new = await api.login("m@x.io", "a brand new passphrase")  # immediately usable
        me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {new['access_token']}"})
        assert me.status_code == 200
        bad = await client.post("/api/v1/auth/login", json={"email": "m@x.io", "password": PASSWORD})
        assert bad.status_code == 401

    async def test_logout_all_ends_every_session_but_keeps_the_password(
        self, api: Api, client: httpx.AsyncClient
    ) -> None:
        await api.register("all@x.io")
        laptop = await api.login("all@x.io")
        phone = await api.login("all@x.io")
        laptop_h = {"Authorization": f"Bearer {laptop['access_token']}"}
        phone_h = {"Authorization": f"Bearer {phone['access_token']}"}
        assert (await client.get("/api/v1/users/me", headers=phone_h)).status_code == 200  # cached as valid
        r = await client.post("/api/v1/auth/logout-all", headers=laptop_h)
        assert r.status_code == 204
        cookie = r.headers["set-cookie"]
        assert cookie.startswith('taskhub_refresh=""') and "Path=/api/v1/auth" in cookie and "Max-Age=0" in cookie
        for h in (laptop_h, phone_h):
            assert (await client.get("/api/v1/users/me", headers=h)).status_code == 401
        for pair in (laptop, phone):
            refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            assert refreshed.status_code == 401
        again = await api.login("all@x.io")  # the same password signs in at once
        me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {again['access_token']}"})
        assert me.status_code == 200

    async def test_logout_all_needs_a_token(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/auth/logout-all")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")


class TestExpiry:
    async def test_token_expires_even_after_it_was_verified_once(
        self, app_factory: object, settings_factory: object
    ) -> None:
        import asyncio

        from tests.conftest import client_for

        app = await app_factory(settings_factory(access_token_ttl=2))  # type: ignore[operator]
        async with client_for(app) as client:
            api = Api(client)
            h = await api.user("exp@x.io")
            assert (await client.get("/api/v1/users/me", headers=h)).status_code == 200
            await asyncio.sleep(3.1)
            r = await client.get("/api/v1/users/me", headers=h)
            assert r.status_code == 401
            assert "expired" in r.json()["detail"]


class TestRaces:
    async def test_concurrent_registrations_of_one_email(self, client: httpx.AsyncClient) -> None:
        import asyncio

        results = await asyncio.gather(
            *[
                client.post(
                    "/api/v1/auth/register", json={"email": f"Race@X.io{' ' * i}", "password": PASSWORD, "name": "R"}
                )
                for i in range(5)
            ]
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [201, 409, 409, 409, 409]

    async def test_concurrent_refreshes_of_one_token(self, api: Api, client: httpx.AsyncClient) -> None:
        import asyncio

        await api.register("rr@x.io")
        tokens = await api.login("rr@x.io")
        results = await asyncio.gather(
            *[client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(3)]
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 401, 401]  # one rotation wins; the others are reuse of a used token
