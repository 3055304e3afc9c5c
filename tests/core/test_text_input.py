"""Text input on SQLite and PostgreSQL: what JSON allows and the databases store is accepted, the
rest is a 422 naming the field (docs/api.md, "Text"). Each case was a 500 or a silent oddity before."""

from __future__ import annotations

import json
import unicodedata

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PASSWORD, Api
from tests.helpers import promote_to_admin

pytestmark = pytest.mark.asyncio

LONE = "\ud800"  # an unpaired surrogate: valid in JSON text (as an escape), not a character


def raw_json(body: object) -> bytes:
    """JSON with ``\\uXXXX`` escapes (``ensure_ascii``), the only way to send an unpaired surrogate."""
    return json.dumps(body).encode()


async def post_json(
    client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str] | None = None, method: str = "POST"
) -> httpx.Response:
    return await client.request(
        method, path, content=raw_json(body), headers={**(headers or {}), "Content-Type": "application/json"}
    )


def assert_422(r: httpx.Response, loc: list[object], msg_start: str) -> None:
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [e["loc"] for e in errors] == [loc], errors
    assert errors[0]["msg"].startswith(msg_start), errors[0]["msg"]


class TestUnpairedSurrogates:
    """Finding: every text field answered 500 (UnicodeEncodeError in the driver) on both backends."""

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": f"a{LONE}b"}, ["body", "title"]),
            ({"title": "t", "description": f"x{LONE}"}, ["body", "description"]),
            ({"title": "t", "tags": ["ok", f"{LONE}"]}, ["body", "tags", 1]),
            ({"title": "t", "description": "\udfff"}, ["body", "description"]),  # a low one alone
        ],
    )
    async def test_task_fields(
        self, api: Api, client: httpx.AsyncClient, body: dict[str, object], loc: list[object]
    ) -> None:
        h = await api.user("s@x.io")
        r = await post_json(client, "/api/v1/tasks", body, h)
        assert_422(r, loc, "must not contain unpaired surrogates")
        task = await api.task(h)
        for method in ("PATCH", "PUT"):
            r = await post_json(client, f"/api/v1/tasks/{task['id']}", body, h, method=method)
            assert_422(r, loc, "must not contain unpaired surrogates")

    async def test_a_surrogate_pair_is_a_character(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("s@x.io")
        r = await post_json(client, "/api/v1/tasks", {"title": "\ud83d\ude00 party", "tags": ["\ud83c\udf89"]}, h)
        assert r.status_code == 201, r.text
        assert r.json()["title"] == "\U0001f600 party"
        assert r.json()["tags"] == ["\U0001f389"]
        got = await client.get(f"/api/v1/tasks/{r.json()['id']}", headers=h)
        assert got.json()["title"] == "\U0001f600 party"

    async def test_account_fields(self, api: Api, client: httpx.AsyncClient) -> None:
        cases = [
            ("/api/v1/auth/register", {"email": f"a{LONE}@x.io", "password": PASSWORD, "name": "A"}, "email"),
            ("/api/v1/auth/register", {"email": "a@x.io", "password": PASSWORD + LONE, "name": "A"}, "password"),
            ("/api/v1/auth/register", {"email": "a@x.io", "password": PASSWORD, "name": f"A{LONE}"}, "name"),
            ("/api/v1/auth/login", {"email": f"a{LONE}@x.io", "password": PASSWORD}, "email"),
            ("/api/v1/auth/login", {"email": "a@x.io", "password": LONE * 8}, "password"),
            ("/api/v1/auth/refresh", {"refresh_token": LONE}, "refresh_token"),
        ]
        for path, body, field in cases:
            r = await post_json(client, path, body)
            assert_422(r, ["body", field], "must not contain unpaired surrogates")
        h = await api.user("me@x.io")
        me_cases = [
            ("PATCH", "/api/v1/users/me", {"name": LONE}, "name"),
            ("PATCH", "/api/v1/users/me", {"email": f"{LONE}@x.io", "current_password": PASSWORD}, "email"),
            (
                "POST",
                "/api/v1/users/me/password",
                {"current_password": PASSWORD, "new_password": LONE * 9},
                "new_password",
            ),
            ("DELETE", "/api/v1/users/me", {"current_password": LONE}, "current_password"),
            ("POST", "/api/v1/auth/logout", {"refresh_token": LONE}, "refresh_token"),
        ]
        for method, path, body, field in me_cases:
            r = await post_json(client, path, body, h, method=method)
            assert_422(r, ["body", field], "must not contain unpaired surrogates")
        assert (await client.get("/api/v1/users/me", headers=h)).status_code == 200  # nothing happened

    async def test_a_key_with_a_surrogate_is_refused_by_the_parser(self, api: Api, client: httpx.AsyncClient) -> None:
        """Object keys never reach a model (or an error message that would echo them)."""
        h = await api.user("s@x.io")
        r = await post_json(client, "/api/v1/tasks", {"title": "t", f"x{LONE}": 1}, h)
        assert r.status_code == 422
        assert r.json()["errors"] == [
            {
                "loc": ["body"],
                "msg": "Input should be a valid string, unable to parse raw data as a unicode string",
                "type": "string_unicode",
            }
        ]


class TestControlCharacters:
    @pytest.mark.parametrize("char", ["\x00", "\x07", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f"])
    async def test_single_line_fields_refuse_every_control(
        self, api: Api, client: httpx.AsyncClient, char: str
    ) -> None:
        h = await api.user("c@x.io")
        r = await post_json(client, "/api/v1/tasks", {"title": f"a{char}b"}, h)
        assert r.status_code == 422, repr(char)
        assert r.json()["errors"][0]["loc"] == ["body", "title"]
        r = await post_json(client, "/api/v1/tasks", {"title": "t", "tags": [f"a{char}b"]}, h)
        assert r.json()["errors"][0]["loc"] == ["body", "tags", 0]
        r = await post_json(client, "/api/v1/users/me", {"name": f"a{char}b"}, h, method="PATCH")
        assert r.json()["errors"][0]["loc"] == ["body", "name"]
        r = await client.get("/api/v1/tasks", params={"tag": f"a{char}b"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "tag"]

    async def test_the_message_names_the_character(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("c@x.io")
        r = await post_json(client, "/api/v1/tasks", {"title": "ab\x1bc"}, h)
        assert r.json()["errors"][0]["msg"] == "must not contain control characters (U+001B at position 2)"

    @pytest.mark.parametrize("char", ["\x00", "\x07", "\x0b", "\x0c", "\x1b", "\x7f", "\x85"])
    async def test_description_and_search_refuse_other_controls(
        self, api: Api, client: httpx.AsyncClient, char: str
    ) -> None:
        h = await api.user("c@x.io")
        r = await post_json(client, "/api/v1/tasks", {"title": "t", "description": f"a{char}b"}, h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "description"], repr(char)
        r = await client.get("/api/v1/tasks", params={"q": f"a{char}b"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "q"]

    async def test_description_keeps_tabs_and_line_breaks(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("c@x.io")
        text = "line one\r\n\tline two\nline three"
        task = await api.task(h, description=text)
        assert task["description"] == text
        r = await client.get("/api/v1/tasks", params={"q": "\tline two\n"}, headers=h)
        assert [t["id"] for t in r.json()["items"]] == [task["id"]]

    async def test_admin_search_refuses_controls(self, app: FastAPI, api: Api, client: httpx.AsyncClient) -> None:
        await api.register("adm@x.io")
        await promote_to_admin(app, "adm@x.io")
        h = {"Authorization": f"Bearer {(await api.login('adm@x.io'))['access_token']}"}
        r = await client.get("/api/v1/admin/users", params={"q": "a\x01"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "q"]

    async def test_passwords_may_hold_controls(self, api: Api, client: httpx.AsyncClient) -> None:
        """Passwords are hashed, never shown or stored as text: every character is theirs
        to choose (NIST SP 800-63B 5.1.1.2): only an unpaired surrogate is refused."""
        odd = "tab\there\x1bescape!"
        await api.register("p@x.io", password=odd)
        tokens = await api.login("p@x.io", password=odd)
        assert tokens["token_type"] == "bearer"


class TestNormalisation:
    async def test_titles_names_and_tags_are_stored_in_nfc(self, api: Api, client: httpx.AsyncClient) -> None:
        decomposed = "Cafe\u0301"  # e + combining acute
        composed = "Caf\u00e9"
        h = await api.user("n@x.io", name=decomposed)
        me = (await client.get("/api/v1/users/me", headers=h)).json()
        assert me["name"] == composed
        task = await api.task(h, title=decomposed, description=decomposed, tags=[decomposed, composed])
        assert task["title"] == composed
        assert task["description"] == composed
        assert task["tags"] == ["caf\u00e9"]  # one tag: the two spellings are the same text
        for tag in (decomposed, composed, "CAFE\u0301"):
            r = await client.get("/api/v1/tasks", params={"tag": tag}, headers=h)
            assert [t["id"] for t in r.json()["items"]] == [task["id"]], tag
        r = await client.get("/api/v1/tasks", params={"q": "afe\u0301"}, headers=h)
        assert [t["id"] for t in r.json()["items"]] == [task["id"]]

    async def test_a_lower_cased_tag_stays_normalised(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("n@x.io")
        task = await api.task(h, tags=["\u0130stanbul"])  # İ lower-cases to i + U+0307
        assert task["tags"] == ["i\u0307stanbul"]
        assert unicodedata.is_normalized("NFC", task["tags"][0])
        r = await client.get("/api/v1/tasks", params={"tag": "\u0130STANBUL"}, headers=h)
        assert [t["id"] for t in r.json()["items"]] == [task["id"]]

    async def test_email_is_stored_as_given(self, api: Api, client: httpx.AsyncClient) -> None:
        decomposed = "jose\u0301@example.com"
        user = await api.register(decomposed)
        assert user["email"] == decomposed  # SPEC: stored as given, compared normalised
        r = await client.post(
            "/api/v1/auth/register", json={"email": "JOS\u00c9@example.com", "password": PASSWORD, "name": "J"}
        )
        assert r.status_code == 409

    async def test_lengths_count_after_normalisation(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("n@x.io")
        # U+0958 is excluded from composition: NFC makes it two code points.
        r = await post_json(client, "/api/v1/tasks", {"title": "t", "description": "\u0958" * 5001}, h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "description"]
        r = await post_json(client, "/api/v1/tasks", {"title": "\u0958" * 101}, h)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "title"]
        r = await post_json(client, "/api/v1/tasks", {"title": "\u0958" * 100}, h)
        assert r.status_code == 201 and len(r.json()["title"]) == 200


class TestOverLong:
    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": "x" * 201}, ["body", "title"]),
            ({"title": "x" * 100_000}, ["body", "title"]),
            ({"title": "t", "description": "x" * 10_001}, ["body", "description"]),
            ({"title": "t", "tags": ["x" * 51]}, ["body", "tags"]),
            ({"title": "t", "tags": ["x" * 5000]}, ["body", "tags", 0]),
            ({"title": "t", "tags": ["t"] * 21}, ["body", "tags"]),
        ],
    )
    async def test_task_limits(
        self, api: Api, client: httpx.AsyncClient, body: dict[str, object], loc: list[object]
    ) -> None:
        h = await api.user("l@x.io")
        r = await post_json(client, "/api/v1/tasks", body, h)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == loc

    async def test_query_limits(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("l@x.io")
        for name, value in (("q", "x" * 201), ("tag", "x" * 51), ("tag", ""), ("cursor", "x" * 1001)):
            r = await client.get("/api/v1/tasks", params={name: value}, headers=h)
            assert r.status_code == 422, (name, r.text)
            assert r.json()["errors"][0]["loc"] == ["query", name]


class TestIdempotencyKey:
    @pytest.mark.parametrize("key", ["caf\u00e9", "tab\there", "\x7f", "\x00"])
    async def test_only_printable_ascii(self, api: Api, client: httpx.AsyncClient, key: str) -> None:
        """Finding: a key with NUL was a 500 on PostgreSQL (ASGI lets any byte through; a proxy may too)."""
        h = await api.user("k@x.io")
        headers = [*h.items(), ("Content-Type", "application/json"), ("Idempotency-Key", key.encode("latin-1"))]
        r = await client.post("/api/v1/tasks", content=b'{"title": "t"}', headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]

    async def test_every_printable_ascii_character_works(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await api.user("k@x.io")
        key = "".join(chr(c) for c in range(0x21, 0x7F))
        first = await client.post("/api/v1/tasks", json={"title": "t"}, headers={**h, "Idempotency-Key": key})
        again = await client.post("/api/v1/tasks", json={"title": "t"}, headers={**h, "Idempotency-Key": key})
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
