"""All-day tasks (docs/api.md "All-day tasks"): ``due_date`` takes a bare date, stored as the last
microsecond of that day in the owner's time zone, with ``all_day`` and ``due_on``; filters, sorting,
stats, events, ETags and idempotency treat it like any other due date; a time-zone change moves
those tasks in the same transaction."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PASSWORD, Api, Backend
from tests.helpers import outbox_events

pytestmark = pytest.mark.asyncio

H = dict[str, str]


async def user_in(api: Api, email: str, time_zone: str) -> H:
    r = await api.client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "T", "time_zone": time_zone}
    )
    assert r.status_code == 201, r.text
    assert r.json()["time_zone"] == time_zone
    tokens = await api.login(email)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def day_start(day: date, zone: str) -> datetime:
    """The first instant of ``day`` in ``zone`` (independent of the code under test)."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


class TestCreateAndRead:
    # Calendar arithmetic: the same on every database (storage is covered by every other test here).
    @pytest.mark.sqlite_only
    @pytest.mark.parametrize(
        ("zone", "day", "due_date"),
        [
            ("UTC", "2026-12-24", "2026-12-24T23:59:59.999999Z"),
            ("Europe/Berlin", "2026-12-24", "2026-12-24T22:59:59.999999Z"),
            ("America/New_York", "2026-12-24", "2026-12-25T04:59:59.999999Z"),
            ("Pacific/Kiritimati", "2026-12-24", "2026-12-24T09:59:59.999999Z"),
            # DST: the day before the change ends at the old offset, the change day at the new one
            ("America/New_York", "2026-03-07", "2026-03-08T04:59:59.999999Z"),
            ("America/New_York", "2026-03-08", "2026-03-09T03:59:59.999999Z"),
            ("America/New_York", "2026-11-01", "2026-11-02T04:59:59.999999Z"),
            ("Europe/Berlin", "2026-03-29", "2026-03-29T21:59:59.999999Z"),
            ("Europe/Berlin", "2026-10-25", "2026-10-25T22:59:59.999999Z"),
            # Santiago skips midnight (00:00 -> 01:00) on 2026-09-06: 2026-09-05 ends at 04:00Z
            ("America/Santiago", "2026-09-05", "2026-09-06T03:59:59.999999Z"),
            ("UTC", "0001-01-02", "0001-01-02T23:59:59.999999Z"),
            ("Pacific/Kiritimati", "9999-12-30", "9999-12-30T09:59:59.999999Z"),
        ],
    )
    async def test_date_makes_an_all_day_task_due_at_the_end_of_that_day(
        self, api: Api, client: httpx.AsyncClient, zone: str, day: str, due_date: str
    ) -> None:
        h = await user_in(api, "z@x.io", zone)
        r = await client.post("/api/v1/tasks", json={"title": "t", "due_date": day}, headers=h)
        assert r.status_code == 201, r.text
        t = r.json()
        assert (t["due_date"], t["all_day"], t["due_on"]) == (due_date, True, day)
        got = (await client.get(f"/api/v1/tasks/{t['id']}", headers=h)).json()
        assert (got["due_date"], got["all_day"], got["due_on"]) == (due_date, True, day)
        listed = (await client.get("/api/v1/tasks", headers=h)).json()["items"]
        assert [(i["due_date"], i["all_day"], i["due_on"]) for i in listed] == [(due_date, True, day)]

    async def test_timed_and_undated_tasks_are_not_all_day(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await user_in(api, "a@x.io", "Europe/Berlin")
        timed = await api.task(h, due_date="2026-12-24T17:00:00+01:00")
        assert (timed["due_date"], timed["all_day"], timed["due_on"]) == ("2026-12-24T16:00:00Z", False, None)
        none = await api.task(h)
        assert (none["due_date"], none["all_day"], none["due_on"]) == (None, False, None)

    @pytest.mark.sqlite_only  # validation, before any database work
    @pytest.mark.parametrize(
        ("due_date", "error_type"),
        [
            ("2026-02-30", "date_parsing"),
            ("2026-13-01", "date_parsing"),
            ("0001-01-01", "date_range"),
            ("9999-12-31", "date_range"),
            ("2026-12-24T10:00:00", "timezone_aware"),  # a date-time still needs its offset
            ("2026-12-24T25:00:00Z", "datetime_from_date_parsing"),
            ("1700000000", "due_date_type"),  # Unix time is no RFC 3339 string
            ("24.12.2026", "due_date_type"),
            ("tomorrow", "due_date_type"),
            ("２０２６-１２-２４", "due_date_type"),  # fullwidth digits
            (20261224, "due_date_type"),
            (True, "due_date_type"),
        ],
    )
    async def test_bad_due_dates_are_422_naming_the_field(
        self, api: Api, client: httpx.AsyncClient, due_date: Any, error_type: str
    ) -> None:
        h = await api.user("bad@x.io")
        r = await client.post("/api/v1/tasks", json={"title": "t", "due_date": due_date}, headers=h)
        assert r.status_code == 422, r.text
        (error,) = r.json()["errors"]
        assert error["loc"] == ["body", "due_date"]
        assert error["type"] == error_type

    @pytest.mark.parametrize("field", [{"all_day": True}, {"due_on": "2026-12-24"}])
    async def test_all_day_and_due_on_are_read_only(self, api: Api, client: httpx.AsyncClient, field: H) -> None:
        h = await api.user("ro@x.io")
        r = await client.post("/api/v1/tasks", json={"title": "t", **field}, headers=h)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", next(iter(field))]

    async def test_idempotent_replay_returns_the_all_day_task(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await user_in(api, "i@x.io", "Europe/Berlin")
        body = {"title": "t", "due_date": "2026-12-24"}
        first = await client.post("/api/v1/tasks", json=body, headers={**h, "Idempotency-Key": "k1"})
        again = await client.post("/api/v1/tasks", json=body, headers={**h, "Idempotency-Key": "k1"})
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        other = await client.post(
            "/api/v1/tasks", json={**body, "due_date": "2026-12-25"}, headers={**h, "Idempotency-Key": "k1"}
        )
        assert other.status_code == 422


class TestUpdate:
    async def test_patch_switches_between_all_day_timed_and_none(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await user_in(api, "p@x.io", "Europe/Berlin")
        task = await api.task(h, due_date="2026-12-24T17:00:00Z")
        url = f"/api/v1/tasks/{task['id']}"

        r = await client.patch(url, json={"due_date": "2026-12-31"}, headers={**h, "If-Match": '"1"'})
        t = r.json()
        assert (t["due_date"], t["all_day"], t["due_on"], t["version"]) == (
            "2026-12-31T22:59:59.999999Z",
            True,
            "2026-12-31",
            2,
        )
        assert r.headers["etag"] == '"2"'

        same = (await client.patch(url, json={"due_date": "2026-12-31"}, headers=h)).json()
        assert same["version"] == 2  # no change, no new version
        title = (await client.patch(url, json={"title": "renamed"}, headers=h)).json()
        assert (title["all_day"], title["due_on"], title["version"]) == (True, "2026-12-31", 3)

        timed = (await client.patch(url, json={"due_date": "2026-12-31T22:59:59.999999Z"}, headers=h)).json()
        # the same instant, but now a timed task: a change
        assert (timed["due_date"], timed["all_day"], timed["due_on"], timed["version"]) == (
            "2026-12-31T22:59:59.999999Z",
            False,
            None,
            4,
        )
        back = (await client.patch(url, json={"due_date": "2027-01-01"}, headers=h)).json()
        assert (back["all_day"], back["due_on"]) == (True, "2027-01-01")
        cleared = (await client.patch(url, json={"due_date": None}, headers=h)).json()
        assert (cleared["due_date"], cleared["all_day"], cleared["due_on"]) == (None, False, None)

    async def test_put_sets_or_clears_all_day(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await user_in(api, "put@x.io", "America/New_York")
        task = await api.task(h)
        url = f"/api/v1/tasks/{task['id']}"
        put = (await client.put(url, json={"title": "t", "due_date": "2026-03-08"}, headers=h)).json()
        assert (put["due_date"], put["all_day"], put["due_on"]) == ("2026-03-09T03:59:59.999999Z", True, "2026-03-08")
        omitted = (await client.put(url, json={"title": "t"}, headers=h)).json()
        assert (omitted["due_date"], omitted["all_day"], omitted["due_on"]) == (None, False, None)

    async def test_events_carry_all_day_and_due_on(self, api: Api, client: httpx.AsyncClient, app: FastAPI) -> None:
        h = await user_in(api, "ev@x.io", "Europe/Berlin")
        task = await api.task(h, due_date="2026-12-24")
        await client.patch(f"/api/v1/tasks/{task['id']}", json={"due_date": "2026-12-24T12:00:00Z"}, headers=h)
        created, updated = [e for e in await outbox_events(app) if e["task_id"] == task["id"]]
        assert created["type"] == "task.created"
        assert {k: created["changes"][k] for k in ("due_date", "all_day", "due_on")} == {
            "due_date": "2026-12-24T22:59:59.999999Z",
            "all_day": True,
            "due_on": "2026-12-24",
        }
        assert updated["changes"] == {
            "due_date": ["2026-12-24T22:59:59.999999Z", "2026-12-24T12:00:00Z"],
            "all_day": [True, False],
            "due_on": ["2026-12-24", None],
        }


class TestFiltersSortStats:
    async def test_today_in_the_users_zone(self, api: Api, client: httpx.AsyncClient) -> None:
        """A task all-day today in Pacific/Kiritimati (UTC+14) is found by that zone's "today"
        window, is not overdue, and yesterday's all-day task there is (the clock is the real one;
        the expected days are computed from it the same way a client would)."""
        zone = "Pacific/Kiritimati"
        h = await user_in(api, "k@x.io", zone)
        today = datetime.now(UTC).astimezone(ZoneInfo(zone)).date()
        yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
        await api.task(h, title="yesterday", due_date=yesterday.isoformat())
        await api.task(h, title="today", due_date=today.isoformat())
        await api.task(h, title="today 00:00", due_date=iso(day_start(today, zone)))
        await api.task(h, title="tomorrow 00:00", due_date=iso(day_start(tomorrow, zone)))
        await api.task(h, title="tomorrow", due_date=tomorrow.isoformat())

        async def titles(query: str) -> list[str]:
            r = await client.get(f"/api/v1/tasks?sort=due_date&{query}", headers=h)
            assert r.status_code == 200, r.text
            return [t["title"] for t in r.json()["items"]]

        window = {
            "due_after": iso(day_start(today, zone) - timedelta(microseconds=1)),
            "due_before": iso(day_start(tomorrow, zone)),
        }
        assert await titles(str(httpx.QueryParams(window))) == ["today 00:00", "today"]
        # the day's first instant has passed; the all-day task of today is not overdue before the day ends
        assert await titles("overdue=true") == ["yesterday", "today 00:00"]
        assert await titles("overdue=false") == ["today", "tomorrow 00:00", "tomorrow"]
        assert await titles("") == ["yesterday", "today 00:00", "today", "tomorrow 00:00", "tomorrow"]
        stats = (await client.get("/api/v1/tasks/stats", headers=h)).json()
        assert stats["overdue"] == 2

    async def test_sorted_after_the_timed_tasks_of_its_day(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await user_in(api, "s@x.io", "Europe/Berlin")
        await api.task(h, title="next day 00:00", due_date="2026-12-25T00:00:00+01:00")
        await api.task(h, title="all day", due_date="2026-12-24")
        await api.task(h, title="23:59", due_date="2026-12-24T23:59:00+01:00")
        body = (await client.get("/api/v1/tasks?sort=due_date", headers=h)).json()
        assert [t["title"] for t in body["items"]] == ["23:59", "all day", "next day 00:00"]
        desc = (await client.get("/api/v1/tasks?sort=-due_date&limit=1", headers=h)).json()
        page2 = (
            await client.get(f"/api/v1/tasks?sort=-due_date&limit=1&cursor={desc['next_cursor']}", headers=h)
        ).json()
        assert [t["title"] for t in page2["items"]] == ["all day"]


class TestTimeZoneChange:
    async def test_all_day_tasks_move_with_the_zone(self, api: Api, client: httpx.AsyncClient, app: FastAPI) -> None:
        h = await user_in(api, "tz@x.io", "Europe/Berlin")
        open_ = await api.task(h, title="open", due_date="2026-03-08")
        done = await api.task(h, title="done", due_date="2026-12-24", status="done")
        timed = await api.task(h, title="timed", due_date="2026-12-24T17:00:00Z")
        undated = await api.task(h, title="undated")
        before = (await client.get("/api/v1/tasks?sort=due_date", headers=h)).json()  # fills the list cache

        r = await client.patch("/api/v1/users/me", json={"time_zone": "America/New_York"}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["time_zone"] == "America/New_York"
        assert (await client.get("/api/v1/users/me", headers=h)).json()["time_zone"] == "America/New_York"

        after = await client.get("/api/v1/tasks?sort=due_date", headers=h)
        assert after.headers["x-cache"] == "MISS"
        items = {t["title"]: t for t in after.json()["items"]}
        assert (items["open"]["due_date"], items["open"]["due_on"], items["open"]["version"]) == (
            "2026-03-09T03:59:59.999999Z",
            "2026-03-08",
            2,
        )
        assert (items["done"]["due_date"], items["done"]["due_on"], items["done"]["version"]) == (
            "2026-12-25T04:59:59.999999Z",
            "2026-12-24",
            2,
        )
        assert items["timed"] == {t["title"]: t for t in before["items"]}["timed"]
        assert items["undated"] == {t["title"]: t for t in before["items"]}["undated"]
        etag = (await client.get(f"/api/v1/tasks/{open_['id']}", headers=h)).headers["etag"]
        assert etag == '"2"'
        moved = [e for e in await outbox_events(app) if e["type"] == "task.updated"]
        assert sorted((e["task_id"], e["changes"]["due_date"][1]) for e in moved) == sorted(
            [(open_["id"], "2026-03-09T03:59:59.999999Z"), (done["id"], "2026-12-25T04:59:59.999999Z")]
        )
        assert all(set(e["changes"]) == {"due_date"} for e in moved)
        assert timed["id"] not in {e["task_id"] for e in moved} and undated["id"] not in {e["task_id"] for e in moved}

        same = await client.patch("/api/v1/users/me", json={"time_zone": "America/New_York"}, headers=h)
        assert same.status_code == 200
        again = (await client.get(f"/api/v1/tasks/{open_['id']}", headers=h)).json()
        assert again["version"] == 2  # the same zone moves nothing

    async def test_other_users_tasks_stay(self, api: Api, client: httpx.AsyncClient) -> None:
        ann = await user_in(api, "ann@x.io", "Europe/Berlin")
        bob = await user_in(api, "bob@x.io", "Europe/Berlin")
        bobs = await api.task(bob, due_date="2026-12-24")
        await api.task(ann, due_date="2026-12-24")
        await client.patch("/api/v1/users/me", json={"time_zone": "Asia/Tokyo"}, headers=ann)
        got = (await client.get(f"/api/v1/tasks/{bobs['id']}", headers=bob)).json()
        assert (got["due_date"], got["version"]) == ("2026-12-24T22:59:59.999999Z", 1)
        anns = (await client.get("/api/v1/tasks", headers=ann)).json()["items"]
        assert anns[0]["due_date"] == "2026-12-24T14:59:59.999999Z"

    async def test_a_bad_zone_changes_nothing(self, api: Api, client: httpx.AsyncClient) -> None:
        h = await user_in(api, "bz@x.io", "Europe/Berlin")
        task = await api.task(h, due_date="2026-12-24")
        r = await client.patch("/api/v1/users/me", json={"time_zone": "Mars/Olympus_Mons"}, headers=h)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", "time_zone"]
        got = (await client.get(f"/api/v1/tasks/{task['id']}", headers=h)).json()
        assert (got["due_date"], got["version"]) == ("2026-12-24T22:59:59.999999Z", 1)


@pytest.mark.postgres_only
async def test_a_date_waits_for_a_concurrent_time_zone_change(
    api: Api, client: httpx.AsyncClient, backend: Backend
) -> None:
    """A task created with a date while the owner's time-zone change is uncommitted waits for it
    and gets the new zone's end of day (the request's authenticated user still says the old zone:
    without the share lock the task would keep it and the change would never move it)."""
    h = await user_in(api, "race@x.io", "Europe/Berlin")
    user_id = uuid.UUID((await client.get("/api/v1/users/me", headers=h)).json()["id"])
    conn = await asyncpg.connect(backend.direct_url.replace("+asyncpg", ""))
    try:
        change = conn.transaction()
        await change.start()
        await conn.execute("UPDATE users SET time_zone = 'Asia/Tokyo' WHERE id = $1", user_id)
        create = asyncio.create_task(
            client.post("/api/v1/tasks", json={"title": "t", "due_date": "2026-12-24"}, headers=h)
        )
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        for _ in range(600):  # until the create waits on the user's row lock (or has finished: a failure below)
            if await conn.fetchval(waiting) or create.done():
                break
            await asyncio.sleep(0.05)
        assert not create.done()
        await change.commit()
        r = await create
    finally:
        await conn.close()
    assert r.status_code == 201, r.text
    assert (r.json()["due_date"], r.json()["due_on"]) == ("2026-12-24T14:59:59.999999Z", "2026-12-24")
