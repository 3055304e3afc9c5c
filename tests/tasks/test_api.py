"""Tasks CRUD, validation, ETags, idempotency, filters, sorting, paging, stats (SPEC "Tasks")."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import Api
from tests.helpers import outbox_events

pytestmark = pytest.mark.asyncio

H = dict[str, str]


@pytest.fixture
async def alice(api: Api) -> H:
    return await api.user("alice@x.io")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TestCreate:
    async def test_defaults_location_etag(self, client: httpx.AsyncClient, alice: H) -> None:
        r = await client.post("/api/v1/tasks", json={"title": "  Write report  "}, headers=alice)
        assert r.status_code == 201
        t = r.json()
        assert r.headers["location"] == f"/api/v1/tasks/{t['id']}"
        assert r.headers["etag"] == '"1"'
        assert t["title"] == "Write report"
        assert t["description"] == ""
        assert t["status"] == "todo"
        assert t["priority"] == "medium"
        assert t["due_date"] is None
        assert t["tags"] == []
        assert t["completed_at"] is None
        assert t["version"] == 1
        assert t["created_at"] == t["updated_at"]
        assert t["created_at"].endswith("Z")
        me = (await client.get("/api/v1/users/me", headers=alice)).json()
        assert t["owner_id"] == me["id"]

    async def test_due_date_converted_to_utc_and_tags_normalized(self, client: httpx.AsyncClient, alice: H) -> None:
        r = await client.post(
            "/api/v1/tasks",
            json={
                "title": "t",
                "due_date": "2026-12-01T10:15:00+02:00",
                "tags": [" Work ", "HOME", "work", "urgent", "home"],
                "status": "done",
                "priority": "high",
            },
            headers=alice,
        )
        assert r.status_code == 201
        t = r.json()
        assert t["due_date"] == "2026-12-01T08:15:00Z"
        assert t["tags"] == ["work", "home", "urgent"]
        assert t["completed_at"] is not None

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": "   "}, ["body", "title"]),
            ({"title": "x" * 201}, ["body", "title"]),
            ({}, ["body", "title"]),
            ({"title": "t", "description": "d" * 10_001}, ["body", "description"]),
            ({"title": "t", "status": "finished"}, ["body", "status"]),
            ({"title": "t", "priority": "urgent"}, ["body", "priority"]),
            ({"title": "t", "due_date": "2026-12-01T10:15:00"}, ["body", "due_date"]),
            ({"title": "t", "due_date": "tomorrow"}, ["body", "due_date"]),
            ({"title": "t", "tags": [f"t{i}" for i in range(21)]}, ["body", "tags"]),
            ({"title": "t", "tags": ["x" * 51]}, ["body", "tags"]),
            ({"title": "t", "tags": ["  "]}, ["body", "tags"]),
            ({"title": "t", "owner_id": "00000000-0000-0000-0000-000000000000"}, ["body", "owner_id"]),
            ({"title": "t", "version": 7}, ["body", "version"]),
        ],
    )
    async def test_validation_names_the_field(
        self, client: httpx.AsyncClient, alice: H, body: dict[str, Any], loc: list[str]
    ) -> None:
        r = await client.post("/api/v1/tasks", json=body, headers=alice)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["loc"] for e in r.json()["errors"]] == [loc]
        listing = await client.get("/api/v1/tasks", headers=alice)
        assert listing.json()["total"] == 0  # nothing half-written

    async def test_limits_inclusive(self, client: httpx.AsyncClient, alice: H) -> None:
        r = await client.post(
            "/api/v1/tasks",
            json={"title": "x" * 200, "description": "d" * 10_000, "tags": [f"{i:02d}" + "x" * 48 for i in range(20)]},
            headers=alice,
        )
        assert r.status_code == 201

    async def test_requires_auth(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/v1/tasks", json={"title": "t"})).status_code == 401


class TestIdempotency:
    async def test_same_key_same_body_replays(self, client: httpx.AsyncClient, alice: H) -> None:
        headers = {**alice, "Idempotency-Key": "k-1"}
        first = await client.post("/api/v1/tasks", json={"title": "once"}, headers=headers)
        second = await client.post("/api/v1/tasks", json={"title": "once"}, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 1

    async def test_same_key_other_body_is_422(self, client: httpx.AsyncClient, alice: H) -> None:
        headers = {**alice, "Idempotency-Key": "k-2"}
        assert (await client.post("/api/v1/tasks", json={"title": "a"}, headers=headers)).status_code == 201
        r = await client.post("/api/v1/tasks", json={"title": "b"}, headers=headers)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 1

    async def test_keys_are_per_user(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        bob = await api.user("bob@x.io")
        a = await client.post("/api/v1/tasks", json={"title": "a"}, headers={**alice, "Idempotency-Key": "k"})
        b = await client.post("/api/v1/tasks", json={"title": "a"}, headers={**bob, "Idempotency-Key": "k"})
        assert a.json()["id"] != b.json()["id"]

    async def test_key_length(self, client: httpx.AsyncClient, alice: H) -> None:
        r = await client.post("/api/v1/tasks", json={"title": "a"}, headers={**alice, "Idempotency-Key": "k" * 256})
        assert r.status_code == 422


class TestReadUpdateDelete:
    async def test_not_yours_is_404_like_missing(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        task = await api.task(alice)
        bob = await api.user("bob@x.io")
        theirs = await client.get(f"/api/v1/tasks/{task['id']}", headers=bob)
        missing = await client.get("/api/v1/tasks/01900000-0000-7000-8000-000000000000", headers=bob)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"].split()[:3] == missing.json()["detail"].split()[:3]
        for method in ("PATCH", "PUT"):
            r = await client.request(method, f"/api/v1/tasks/{task['id']}", json={"title": "x"}, headers=bob)
            assert r.status_code == 404
        assert (await client.delete(f"/api/v1/tasks/{task['id']}", headers=bob)).status_code == 404
        assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)).json()["title"] == "a task"

    async def test_etag_and_if_none_match(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        task = await api.task(alice)
        r = await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)
        assert r.status_code == 200
        assert r.headers["etag"] == '"1"'
        r304 = await client.get(f"/api/v1/tasks/{task['id']}", headers={**alice, "If-None-Match": '"1"'})
        assert r304.status_code == 304
        assert r304.content == b""
        r200 = await client.get(f"/api/v1/tasks/{task['id']}", headers={**alice, "If-None-Match": '"9"'})
        assert r200.status_code == 200

    async def test_weak_etag_never_satisfies_if_match(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        """If-Match compares strongly (RFC 9110 13.1.1), If-None-Match weakly (13.1.2)."""
        task = await api.task(alice)
        url = f"/api/v1/tasks/{task['id']}"
        weak = await client.patch(url, json={"title": "x"}, headers={**alice, "If-Match": 'W/"1"'})
        assert weak.status_code == 412
        listed = await client.patch(url, json={"title": "x"}, headers={**alice, "If-Match": '"0", "1"'})
        assert listed.status_code == 200
        assert (await client.get(url, headers={**alice, "If-None-Match": 'W/"2"'})).status_code == 304

    async def test_patch_bumps_version_and_only_changes_sent_fields(
        self, api: Api, client: httpx.AsyncClient, alice: H
    ) -> None:
        task = await api.task(alice, description="keep", priority="high", tags=["a"])
        r = await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "new"}, headers=alice)
        assert r.status_code == 200
        t = r.json()
        assert (t["title"], t["description"], t["priority"], t["tags"], t["version"]) == (
            "new",
            "keep",
            "high",
            ["a"],
            2,
        )
        assert r.headers["etag"] == '"2"'
        assert t["updated_at"] > task["updated_at"]
        same = await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "new"}, headers=alice)
        assert same.json()["version"] == 2  # no change, no new version

    async def test_patch_null_rules(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        task = await api.task(alice, due_date="2030-01-01T00:00:00Z")
        r = await client.patch(f"/api/v1/tasks/{task['id']}", json={"due_date": None}, headers=alice)
        assert r.status_code == 200
        assert r.json()["due_date"] is None
        r = await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": None}, headers=alice)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", "title"]

    async def test_if_match_stale_is_412_and_changes_nothing(
        self, api: Api, client: httpx.AsyncClient, alice: H
    ) -> None:
        task = await api.task(alice)
        ok = await client.patch(
            f"/api/v1/tasks/{task['id']}", json={"title": "v2"}, headers={**alice, "If-Match": '"1"'}
        )
        assert ok.status_code == 200
        stale = await client.patch(
            f"/api/v1/tasks/{task['id']}", json={"title": "v3"}, headers={**alice, "If-Match": '"1"'}
        )
        assert stale.status_code == 412
        stale_put = await client.put(
            f"/api/v1/tasks/{task['id']}", json={"title": "v3"}, headers={**alice, "If-Match": '"1"'}
        )
        assert stale_put.status_code == 412
        unquoted = await client.patch(
            f"/api/v1/tasks/{task['id']}", json={"title": "v3"}, headers={**alice, "If-Match": "2"}
        )
        assert unquoted.status_code == 412
        assert 'ETags are quoted strings: send If-Match: "<version>"' in unquoted.json()["detail"]
        stale_delete = await client.delete(f"/api/v1/tasks/{task['id']}", headers={**alice, "If-Match": '"1"'})
        assert stale_delete.status_code == 412
        current = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)).json()
        assert (current["title"], current["version"]) == ("v2", 2)

    async def test_put_resets_omitted_fields(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        task = await api.task(alice, description="d", priority="high", tags=["x"], due_date="2030-01-01T00:00:00Z")
        r = await client.put(f"/api/v1/tasks/{task['id']}", json={"title": "replaced"}, headers=alice)
        assert r.status_code == 200
        t = r.json()
        assert (t["title"], t["description"], t["priority"], t["tags"], t["due_date"], t["status"]) == (
            "replaced",
            "",
            "medium",
            [],
            None,
            "todo",
        )
        assert t["version"] == 2
        assert (await client.put(f"/api/v1/tasks/{task['id']}", json={}, headers=alice)).status_code == 422

    async def test_completed_at_follows_status(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        task = await api.task(alice)
        done = (await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=alice)).json()
        assert done["completed_at"] is not None
        again = (
            await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "in_progress"}, headers=alice)
        ).json()
        assert again["completed_at"] is None
        assert again["version"] == 3

    async def test_delete_twice(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        task = await api.task(alice)
        assert (await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice)).status_code == 204
        assert (await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice)).status_code == 404
        assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)).status_code == 404

    async def test_malformed_id_is_422(self, client: httpx.AsyncClient, alice: H) -> None:
        r = await client.get("/api/v1/tasks/not-a-uuid", headers=alice)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["path", "task_id"]

    async def test_concurrent_patches_never_lose_an_update(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        task = await api.task(alice)
        results = await asyncio.gather(
            *[
                client.patch(f"/api/v1/tasks/{task['id']}", json={"description": f"d{i}"}, headers=alice)
                for i in range(8)
            ]
        )
        codes = sorted(r.status_code for r in results)
        assert set(codes) <= {200, 412}
        final = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)).json()
        assert final["version"] == 1 + codes.count(200)


class TestEvents:
    async def test_each_change_writes_one_outbox_event(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient, alice: H
    ) -> None:
        task = await api.task(alice, title="e")
        await client.patch(f"/api/v1/tasks/{task['id']}", json={"priority": "high"}, headers=alice)
        await client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}, headers=alice)
        await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice)
        await client.post("/api/v1/tasks", json={"title": ""}, headers=alice)  # rejected: no event
        events = await outbox_events(app)
        assert [e["type"] for e in events] == ["task.created", "task.updated", "task.completed", "task.deleted"]
        assert [e["version"] for e in events] == [1, 2, 3, 3]
        assert all(e["task_id"] == task["id"] and e["owner_id"] == task["owner_id"] for e in events)
        assert events[1]["changes"] == {"priority": ["medium", "high"]}
        assert events[2]["changes"] == {"status": ["todo", "done"]}
        assert set(events[0]) == {"event_id", "type", "occurred_at", "task_id", "owner_id", "version", "changes"}
        assert len({e["event_id"] for e in events}) == 4


class TestUnitOfWork:
    @pytest.mark.in_process  # patches the session of the process that serves the request
    async def test_commit_happens_before_the_response(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient, alice: H, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the commit fails, the client sees a 500, never a 201 for a write that did not happen."""
        from sqlalchemy.ext.asyncio import AsyncSession

        original = AsyncSession.commit

        async def failing_commit(self: AsyncSession) -> None:
            raise RuntimeError("disk full")

        monkeypatch.setattr(AsyncSession, "commit", failing_commit)
        r = await client.post("/api/v1/tasks", json={"title": "lost"}, headers=alice)
        monkeypatch.setattr(AsyncSession, "commit", original)
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert "disk full" not in r.text and "Traceback" not in r.text
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 0
        assert await outbox_events(app) == []


class TestList:
    async def test_only_own_tasks_and_shape(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        bob = await api.user("bob@x.io")
        await api.task(alice, title="mine")
        await api.task(bob, title="theirs")
        r = await client.get("/api/v1/tasks", headers=alice)
        body = r.json()
        assert set(body) == {"items", "limit", "page", "total", "next_cursor"}
        assert [t["title"] for t in body["items"]] == ["mine"]
        assert (body["limit"], body["page"], body["total"], body["next_cursor"]) == (20, 1, 1, None)

    async def test_filters(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        now = datetime.now(UTC)
        a = await api.task(
            alice,
            title="Alpha report",
            status="todo",
            priority="high",
            tags=["work"],
            due_date=iso(now - timedelta(days=1)),
        )
        b = await api.task(
            alice,
            title="beta",
            description="The REPORT draft",
            status="in_progress",
            priority="low",
            tags=["home", "work"],
            due_date=iso(now + timedelta(days=3)),
        )
        c = await api.task(
            alice, title="gamma", status="done", priority="medium", due_date=iso(now - timedelta(days=2))
        )
        d = await api.task(alice, title="delta 100%_done", status="todo", priority="low")

        async def ids(query: str) -> set[str]:
            r = await client.get(f"/api/v1/tasks?{query}", headers=alice)
            assert r.status_code == 200, r.text
            return {t["id"] for t in r.json()["items"]}

        assert await ids("status=todo") == {a["id"], d["id"]}
        assert await ids("status=todo&status=in_progress") == {a["id"], b["id"], d["id"]}
        assert await ids("priority=low") == {b["id"], d["id"]}
        assert await ids("priority=low&status=todo") == {d["id"]}
        assert await ids("tag=work") == {a["id"], b["id"]}
        assert await ids("tag=WORK") == {a["id"], b["id"]}
        assert await ids("tag=home") == {b["id"]}
        assert await ids("q=report") == {a["id"], b["id"]}
        assert await ids("q=100%25_") == {d["id"]}  # wildcards are literal
        assert await ids("q=50%25") == set()
        assert await ids("q=") == {a["id"], b["id"], c["id"], d["id"]}  # empty search = no filter
        assert await ids("overdue=true") == {a["id"]}
        assert await ids("overdue=false") == {b["id"], c["id"], d["id"]}
        before = iso(now).replace("+", "%2B")
        assert await ids(f"due_before={before}") == {a["id"], c["id"]}
        assert await ids(f"due_after={before}") == {b["id"]}

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=101",
            "page=0",
            "sort=title",
            "status=nope",
            "priority=x",
            "overdue=maybe",
            "due_before=2026-01-01T00:00:00",
            "page=1&cursor=abc",
            "cursor=%%%",
            "q=" + "x" * 201,
        ],
    )
    async def test_out_of_range_is_422(self, client: httpx.AsyncClient, alice: H, query: str) -> None:
        r = await client.get(f"/api/v1/tasks?{query}", headers=alice)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"][0] == "query"

    async def test_sorts_with_nulls_last_and_id_ties(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        made = [
            await api.task(alice, title="n1", priority="low"),
            await api.task(alice, title="d2", priority="high", due_date="2030-01-02T00:00:00Z"),
            await api.task(alice, title="d1", priority="medium", due_date="2030-01-01T00:00:00Z"),
            await api.task(alice, title="n2", priority="high"),
            await api.task(alice, title="d1b", priority="low", due_date="2030-01-01T00:00:00Z"),
        ]
        by_title = {t["title"]: t for t in made}

        async def titles(sort: str) -> list[str]:
            r = await client.get(f"/api/v1/tasks?sort={sort}", headers=alice)
            return [t["title"] for t in r.json()["items"]]

        # UUIDv7 ids increase with creation, so id ties follow creation order.
        assert await titles("due_date") == ["d1", "d1b", "d2", "n1", "n2"]
        assert await titles("-due_date") == ["d2", "d1b", "d1", "n2", "n1"]
        assert await titles("-created_at") == ["d1b", "n2", "d1", "d2", "n1"]
        assert await titles("created_at") == ["n1", "d2", "d1", "n2", "d1b"]
        assert await titles("priority") == ["n1", "d1b", "d1", "d2", "n2"]
        assert await titles("-priority") == ["n2", "d2", "d1", "d1b", "n1"]
        await client.patch(f"/api/v1/tasks/{by_title['n1']['id']}", json={"title": "n1!"}, headers=alice)
        assert (await titles("-updated_at"))[0] == "n1!"
        assert (await titles("updated_at"))[-1] == "n1!"

    @pytest.mark.parametrize(
        "sort",
        ["-created_at", "created_at", "due_date", "-due_date", "priority", "-priority", "updated_at", "-updated_at"],
    )
    async def test_keyset_and_offset_agree(self, api: Api, client: httpx.AsyncClient, alice: H, sort: str) -> None:
        for i in range(13):
            due = f"2030-01-{1 + i % 3:02d}T00:00:00Z" if i % 4 else None
            await api.task(alice, title=f"t{i}", priority=["low", "medium", "high"][i % 3], due_date=due)
        offset_ids: list[str] = []
        for page in (1, 2, 3):
            body = (await client.get(f"/api/v1/tasks?sort={sort}&limit=5&page={page}", headers=alice)).json()
            assert body["total"] == 13 and body["page"] == page
            offset_ids += [t["id"] for t in body["items"]]
        keyset_ids: list[str] = []
        body = (await client.get(f"/api/v1/tasks?sort={sort}&limit=5", headers=alice)).json()
        keyset_ids += [t["id"] for t in body["items"]]
        while body["next_cursor"]:
            body = (
                await client.get(f"/api/v1/tasks?sort={sort}&limit=5&cursor={body['next_cursor']}", headers=alice)
            ).json()
            assert body["page"] is None and body["total"] is None
            keyset_ids += [t["id"] for t in body["items"]]
        assert len(offset_ids) == 13
        assert keyset_ids == offset_ids
        assert len(set(keyset_ids)) == 13

    async def test_cursor_from_other_sort_is_422(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        for _ in range(3):
            await api.task(alice)
        cursor = (await client.get("/api/v1/tasks?limit=1", headers=alice)).json()["next_cursor"]
        r = await client.get(f"/api/v1/tasks?limit=1&sort=priority&cursor={cursor}", headers=alice)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["query", "cursor"]

    async def test_page_past_the_end_is_empty(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        await api.task(alice)
        body = (await client.get("/api/v1/tasks?page=5", headers=alice)).json()
        assert (body["items"], body["total"], body["page"]) == ([], 1, 5)

    async def test_list_is_fresh_after_each_write(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        first = await client.get("/api/v1/tasks", headers=alice)
        assert first.json()["total"] == 0 and first.headers["x-cache"] == "MISS"
        again = await client.get("/api/v1/tasks", headers=alice)
        assert again.headers["x-cache"] == "HIT"
        task = await api.task(alice, title="new")
        after_create = await client.get("/api/v1/tasks", headers=alice)
        assert after_create.json()["total"] == 1
        await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": "renamed"}, headers=alice)
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["items"][0]["title"] == "renamed"
        await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice)
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 0

    async def test_overdue_pages_are_not_cached(self, client: httpx.AsyncClient, alice: H) -> None:
        """The "overdue" filter depends on the clock, so a cached page would go stale without any write."""
        for _ in range(2):
            assert (await client.get("/api/v1/tasks?overdue=true", headers=alice)).headers["x-cache"] == "MISS"


class TestMalformedInputIs422:
    """Input the database cannot store or compare (NUL, dates outside its range, huge integers,
    tampered cursors) is refused with a 422 naming the field, never a 500 from the driver."""

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": "a\u0000b"}, ["body", "title"]),
            ({"title": "t", "description": "a\u0000"}, ["body", "description"]),
            ({"title": "t", "tags": ["a\u0000"]}, ["body", "tags", 0]),  # the item is named
            ({"title": "t", "due_date": "0001-01-01T00:00:00+05:00"}, ["body", "due_date"]),
            ({"title": "t", "due_date": "9999-12-31T23:59:59-05:00"}, ["body", "due_date"]),
            ({"title": "t", "due_date": 1700000000}, ["body", "due_date"]),
        ],
    )
    async def test_body(self, client: httpx.AsyncClient, alice: H, body: dict[str, Any], loc: list[Any]) -> None:
        r = await client.post("/api/v1/tasks", json=body, headers=alice)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == loc

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("q=a%00b", "q"),
            ("tag=a%00b", "tag"),
            ("due_before=0001-01-01T00:00:00%2B05:00", "due_before"),
            ("due_after=9999-12-31T23:59:59-05:00", "due_after"),
            ("page=10000000000000000000", "page"),
        ],
    )
    async def test_list_query(self, client: httpx.AsyncClient, alice: H, query: str, field: str) -> None:
        r = await client.get(f"/api/v1/tasks?{query}", headers=alice)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["query", field]

    @pytest.mark.parametrize(
        ("sort", "key"),
        [
            ("priority", {"v": 1000000000000, "id": "01900000-0000-7000-8000-000000000000"}),
            ("-created_at", {"v": "0001-01-01T00:00:00+05:00", "id": "01900000-0000-7000-8000-000000000000"}),
        ],
    )
    async def test_tampered_cursor(self, client: httpx.AsyncClient, alice: H, sort: str, key: dict[str, Any]) -> None:
        cursor = base64.urlsafe_b64encode(json.dumps({"s": sort, "k": key}).encode()).decode().rstrip("=")
        r = await client.get(f"/api/v1/tasks?sort={sort}&cursor={cursor}", headers=alice)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["query", "cursor"]


class TestStats:
    async def test_exact_counts(self, api: Api, client: httpx.AsyncClient, alice: H) -> None:
        now = datetime.now(UTC)
        await api.task(alice, status="todo", priority="high", due_date=iso(now - timedelta(hours=1)))
        await api.task(alice, status="in_progress", priority="low", due_date=iso(now - timedelta(days=3)))
        await api.task(alice, status="done", priority="low", due_date=iso(now - timedelta(days=3)))
        await api.task(alice, status="todo", priority="medium", due_date=iso(now + timedelta(days=1)))
        await api.task(alice, status="done")
        bob = await api.user("bob@x.io")
        await api.task(bob, status="done")
        r = await client.get("/api/v1/tasks/stats", headers=alice)
        assert r.json() == {
            "total": 5,
            "by_status": {"todo": 2, "in_progress": 1, "done": 2},
            "by_priority": {"low": 2, "medium": 2, "high": 1},
            "overdue": 2,
            "completed_last_7_days": 2,
        }

    async def test_empty(self, client: httpx.AsyncClient, alice: H) -> None:
        r = await client.get("/api/v1/tasks/stats", headers=alice)
        assert r.json()["total"] == 0 and r.json()["by_status"] == {"todo": 0, "in_progress": 0, "done": 0}


class TestConcurrency:
    async def test_concurrent_creates_with_one_key_make_one_task(self, client: httpx.AsyncClient, alice: H) -> None:
        headers = {**alice, "Idempotency-Key": "race"}
        results = await asyncio.gather(
            *[client.post("/api/v1/tasks", json={"title": "once"}, headers=headers) for _ in range(6)]
        )
        codes = [r.status_code for r in results]
        assert set(codes) <= {201, 409}, codes
        assert {r.json()["id"] for r in results if r.status_code == 201} == {
            t["id"] for t in (await client.get("/api/v1/tasks", headers=alice)).json()["items"]
        }
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 1
        retry = await client.post("/api/v1/tasks", json={"title": "once"}, headers=headers)
        assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"

    async def test_racing_patch_and_versioned_deletes_never_delete_a_newer_version(
        self, app: FastAPI, api: Api, client: httpx.AsyncClient, alice: H
    ) -> None:
        """A PATCH and two DELETEs all asserting version 1: at most one delete wins, none after the
        PATCH made version 2, and the outbox holds one ``task.deleted`` per 204, versions in order.

        SQLite's write lock serialises these requests, so only PostgreSQL really races them;
        ``test_concurrency.py`` hands the service a stale task to make the interleaving certain."""
        for _ in range(5):
            task = await api.task(alice)
            url = f"/api/v1/tasks/{task['id']}"
            patch, *deletes = await asyncio.gather(
                client.patch(url, json={"title": "p"}, headers={**alice, "If-Match": '"1"'}),
                client.delete(url, headers={**alice, "If-Match": '"1"'}),
                client.delete(url, headers={**alice, "If-Match": '"1"'}),
            )
            delete_codes = sorted(d.status_code for d in deletes)
            assert delete_codes.count(204) <= 1
            if patch.status_code == 200:
                assert 204 not in delete_codes, "a delete asserting version 1 removed version 2"
            events = [e for e in await outbox_events(app) if e["task_id"] == task["id"]]
            assert [e["type"] for e in events].count("task.deleted") == delete_codes.count(204)
            versions = [e["version"] for e in events]
            assert versions == sorted(versions)
