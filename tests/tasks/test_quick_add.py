"""``POST /tasks/parse`` (docs/api.md "Quick add"): real phrases read by dateparser in the user's
time zone, with "now" fixed through ``taskhub.tasks.quickadd.clock`` (the one clock it reads).

Parsing reads no table but the caller's account: SQLite alone (``sqlite_only``); storing what it
returns is tested on every backend in ``test_all_day.py``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskhub.config import Settings
from taskhub.tasks import quickadd
from tests.conftest import PASSWORD, Api, client_for
from tests.helpers import outbox_events

pytestmark = [pytest.mark.asyncio, pytest.mark.sqlite_only]

H = dict[str, str]
# Friday 2026-12-04, 13:00 in Berlin
FRIDAY_NOON_UTC = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Fix quick add's "now" (aware); FRIDAY_NOON_UTC until a test sets another."""

    def set_now(value: datetime) -> None:
        monkeypatch.setattr(quickadd, "clock", lambda: value)

    set_now(FRIDAY_NOON_UTC)
    return set_now


async def user_in(api: Api, email: str, time_zone: str) -> H:
    body = {"email": email, "password": PASSWORD, "name": "T", "time_zone": time_zone}
    assert (await api.client.post("/api/v1/auth/register", json=body)).status_code == 201
    return {"Authorization": f"Bearer {(await api.login(email))['access_token']}"}


async def parse(client: httpx.AsyncClient, h: H, text: str) -> dict[str, Any]:
    r = await client.post("/api/v1/tasks/parse", json={"text": text}, headers=h)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    for part in body["parts"]:
        assert text[part["start"] : part["end"]] == part["text"]
    return body


def due(body: dict[str, Any]) -> tuple[str | None, bool, str | None]:
    return body["due_date"], body["all_day"], body["due_on"]


class TestParse:
    async def test_the_example(self, api: Api, client: httpx.AsyncClient, now: Any) -> None:
        h = await user_in(api, "qa@x.io", "Europe/Berlin")
        body = await parse(client, h, "Call Ann tomorrow 5pm !high #family")
        assert body == {
            "title": "Call Ann",
            "due_date": "2026-12-05T16:00:00Z",
            "all_day": False,
            "due_on": None,
            "priority": "high",
            "tags": ["family"],
            "time_zone": "Europe/Berlin",
            "parts": [
                {"kind": "due", "text": "tomorrow 5pm", "start": 9, "end": 21, "value": "2026-12-05T16:00:00Z"},
                {"kind": "priority", "text": "!high", "start": 22, "end": 27, "value": "high"},
                {"kind": "tag", "text": "#family", "start": 28, "end": 35, "value": "family"},
            ],
        }

    @pytest.mark.parametrize(
        ("text", "title", "expected"),
        [
            # a day without a time: all-day, due at the end of that day in Berlin (UTC+1 in December)
            ("Pay rent tomorrow", "Pay rent", ("2026-12-05T22:59:59.999999Z", True, "2026-12-05")),
            ("today", "", ("2026-12-04T22:59:59.999999Z", True, "2026-12-04")),
            ("Gym next monday", "Gym", ("2026-12-07T22:59:59.999999Z", True, "2026-12-07")),
            ("Call back in 3 days", "Call back", ("2026-12-07T22:59:59.999999Z", True, "2026-12-07")),
            ("Gifts dec 24", "Gifts", ("2026-12-24T22:59:59.999999Z", True, "2026-12-24")),
            ("Submit report by friday", "Submit report", ("2026-12-11T22:59:59.999999Z", True, "2026-12-11")),
            ("read 1984 tomorrow", "read 1984", ("2026-12-05T22:59:59.999999Z", True, "2026-12-05")),
            # with a time: timed, in UTC
            ("Standup friday 9am", "Standup", ("2026-12-11T08:00:00Z", False, None)),  # today's 9am has passed
            ("Email Sam monday 10:30", "Email Sam", ("2026-12-07T09:30:00Z", False, None)),
            ("Call Ann tomorrow at 5 pm", "Call Ann", ("2026-12-05T16:00:00Z", False, None)),
            ("dentist dec 24 at 3pm", "dentist", ("2026-12-24T14:00:00Z", False, None)),
            # no date, and ordinary words dateparser would read as one
            ("Buy milk", "Buy milk", (None, False, None)),
            ("Write may report", "Write may report", (None, False, None)),
            ("Plan the march", "Plan the march", (None, False, None)),
            ("Call mom now", "Call mom now", (None, False, None)),
            ("Read chapter 12", "Read chapter 12", (None, False, None)),
            ("Call 555 1234", "Call 555 1234", (None, False, None)),
            ("Build t20 report", "Build t20 report", (None, False, None)),  # dateparser: "t20" is Dec 20
            ("Flight LH400 tomorrow", "Flight LH400", ("2026-12-05T22:59:59.999999Z", True, "2026-12-05")),
            ("Pay rent on the 1st", "Pay rent on the 1st", (None, False, None)),  # dateparser: May 7
        ],
    )
    async def test_phrases_in_berlin(
        self,
        api: Api,
        client: httpx.AsyncClient,
        now: Any,
        text: str,
        title: str,
        expected: tuple[str | None, bool, str | None],
    ) -> None:
        h = await user_in(api, "qb@x.io", "Europe/Berlin")
        body = await parse(client, h, text)
        assert (body["title"], due(body)) == (title, expected)
        dues = [p for p in body["parts"] if p["kind"] == "due"]
        if expected[0] is None:
            assert dues == []
        else:
            assert [d["value"] for d in dues] == [expected[2] if expected[1] else expected[0]]

    @pytest.mark.parametrize(
        ("zone", "at", "text", "expected"),
        [
            # New York springs forward on Sunday 2026-03-08: read on Saturday noon (EST, -05:00)
            ("America/New_York", "2026-03-07T17:00:00Z", "tomorrow 9am", ("2026-03-08T13:00:00Z", False, None)),
            (
                "America/New_York",
                "2026-03-07T17:00:00Z",
                "tomorrow",
                ("2026-03-09T03:59:59.999999Z", True, "2026-03-08"),
            ),
            ("America/New_York", "2026-03-07T17:00:00Z", "today 5pm", ("2026-03-07T22:00:00Z", False, None)),
            # Berlin springs forward on 2026-03-29 and falls back on 2026-10-25
            ("Europe/Berlin", "2026-03-28T11:00:00Z", "tomorrow 9am", ("2026-03-29T07:00:00Z", False, None)),
            ("Europe/Berlin", "2026-03-28T11:00:00Z", "in 2 days", ("2026-03-30T21:59:59.999999Z", True, "2026-03-30")),
            ("Europe/Berlin", "2026-10-24T22:30:00Z", "today 5pm", ("2026-10-25T16:00:00Z", False, None)),
            ("Europe/Berlin", "2026-10-24T22:30:00Z", "tomorrow 9am", ("2026-10-26T08:00:00Z", False, None)),
            # late evening in New York is already tomorrow in UTC: "today" is the user's day
            ("America/New_York", "2026-12-05T03:00:00Z", "today", ("2026-12-05T04:59:59.999999Z", True, "2026-12-04")),
            ("UTC", "2026-12-05T03:00:00Z", "today", ("2026-12-05T23:59:59.999999Z", True, "2026-12-05")),
        ],
    )
    async def test_relative_to_now_in_the_users_zone_across_dst(
        self,
        api: Api,
        client: httpx.AsyncClient,
        now: Callable[[datetime], None],
        zone: str,
        at: str,
        text: str,
        expected: tuple[str | None, bool, str | None],
    ) -> None:
        now(datetime.fromisoformat(at))
        h = await user_in(api, "dst@x.io", zone)
        body = await parse(client, h, text)
        assert (due(body), body["time_zone"]) == (expected, zone)

    async def test_priorities_and_tags(self, api: Api, client: httpx.AsyncClient, now: Any) -> None:
        h = await api.user("pt@x.io")
        body = await parse(client, h, "Fix the build !1 #Work #work #home !low")
        assert (body["title"], body["priority"], body["tags"]) == ("Fix the build !low", "high", ["work", "home"])
        assert [(p["kind"], p["value"]) for p in body["parts"]] == [
            ("priority", "high"),
            ("tag", "work"),
            ("tag", "work"),
            ("tag", "home"),
        ]
        for text, priority in (("a !HIGH", "high"), ("a !medium", "medium"), ("a !2", "medium"), ("a !3", "low")):
            assert (await parse(client, h, text))["priority"] == priority
        plain = await parse(client, h, "wow!high a#b !urgent #")
        assert (plain["title"], plain["priority"], plain["tags"], plain["parts"]) == (
            "wow!high a#b !urgent #",
            None,
            [],
            [],
        )
        long_tag = "#" + "x" * 51
        kept = await parse(client, h, f"a {long_tag} #ok")
        assert (kept["title"], kept["tags"]) == (f"a {long_tag}", ["ok"])
        many = await parse(client, h, " ".join(f"#t{i}" for i in range(22)))
        assert (many["tags"], many["title"]) == ([f"t{i}" for i in range(20)], "#t20 #t21")

    async def test_dates_at_the_ends_of_the_calendar(self, api: Api, client: httpx.AsyncClient, now: Any) -> None:
        h = await user_in(api, "end@x.io", "Pacific/Pago_Pago")  # UTC-11: 9999-12-31 23:00 there is year 10000 in UTC
        body = await parse(client, h, "party dec 31 9999 11pm")
        assert (body["title"], due(body)) == ("party dec 31 9999 11pm", (None, False, None))
        last = await parse(client, h, "party 9999-12-30")
        assert (last["title"], due(last)) == ("party", ("9999-12-31T10:59:59.999999Z", True, "9999-12-30"))

    async def test_offsets_count_code_points(self, api: Api, client: httpx.AsyncClient, now: Any) -> None:
        h = await api.user("cp@x.io")
        body = await parse(client, h, "😀 Café tomorrow #ünï")
        assert [(p["kind"], p["start"], p["end"]) for p in body["parts"]] == [("due", 7, 15), ("tag", 16, 20)]
        assert (body["title"], body["tags"]) == ("😀 Café", ["ünï"])

    async def test_nothing_is_written(self, api: Api, client: httpx.AsyncClient, app: FastAPI, now: Any) -> None:
        h = await api.user("nw@x.io")
        await parse(client, h, "Call Ann tomorrow 5pm !high #family")
        assert (await client.get("/api/v1/tasks", headers=h)).json()["total"] == 0
        assert await outbox_events(app) == []

    async def test_the_result_creates_the_task(self, api: Api, client: httpx.AsyncClient, now: Any) -> None:
        h = await user_in(api, "cr@x.io", "Europe/Berlin")
        for text in ("Pay rent dec 24 !low #home", "Call Ann tomorrow 5pm !high #family"):
            body = await parse(client, h, text)
            (part,) = [p for p in body["parts"] if p["kind"] == "due"]
            create = {
                "title": body["title"],
                "priority": body["priority"],
                "tags": body["tags"],
                "due_date": part["value"],
            }
            task = await api.task(h, **create)
            assert (task["due_date"], task["all_day"], task["due_on"]) == due(body)


class TestErrors:
    @pytest.mark.parametrize(
        ("body", "loc", "error_type"),
        [
            ({"text": ""}, ["body", "text"], "too_short"),
            ({"text": "x" * 501}, ["body", "text"], "too_long"),
            ({"text": "two\nlines"}, ["body", "text"], "value_error"),
            ({"text": "nul\u0000"}, ["body", "text"], "value_error"),
            ({"text": 5}, ["body", "text"], "string_type"),
            ({}, ["body", "text"], "missing"),
            ({"text": "a", "now": "2026-01-01T00:00:00Z"}, ["body", "now"], "extra_forbidden"),
        ],
    )
    async def test_bad_bodies_are_422_naming_the_field(
        self, api: Api, client: httpx.AsyncClient, body: dict[str, Any], loc: list[str], error_type: str
    ) -> None:
        h = await api.user("er@x.io")
        r = await client.post("/api/v1/tasks/parse", json=body, headers=h)
        assert r.status_code == 422, r.text
        (error,) = r.json()["errors"]
        assert (error["loc"], error["type"]) == (loc, error_type)

    async def test_500_characters_are_fine(self, api: Api, client: httpx.AsyncClient, now: Any) -> None:
        h = await api.user("ok@x.io")
        text = "x" * 491 + " tomorrow"
        body = await parse(client, h, text)
        assert (len(text), body["title"], body["due_on"]) == (500, "x" * 491, "2026-12-05")

    async def test_needs_a_token(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/tasks/parse", json={"text": "tomorrow"})
        assert r.status_code == 401

    async def test_rate_limited_per_user(
        self, api: Api, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings], now: Any
    ) -> None:
        limited = await app_factory(settings_factory(rate_limit_enabled=True, rate_limit_user="3 per minute"))
        async with client_for(limited) as c:
            limited_api = Api(c)
            h = await limited_api.user("rl@x.io")
            answers = [await c.post("/api/v1/tasks/parse", json={"text": "a"}, headers=h) for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert answers[0].headers["ratelimit-limit"] == "3"
        assert int(answers[3].headers["retry-after"]) > 0
