"""Live updates across instances: two ``serve`` processes share Redis (and PostgreSQL, RabbitMQ);
a write on A reaches a stream held on B within a second; a reconnect with ``Last-Event-ID`` gets
exactly the missed events; another user's events never arrive; revocation ends the stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from tests.events.conftest import BrokerNames
from tests.integration.conftest import ServerProcess, seed_user

pytestmark = pytest.mark.integration


@dataclass
class Stream:
    """A background reader of one SSE stream: frames as ``(id, event, data, arrived_at)``."""

    events: list[tuple[int, str, dict[str, Any], float]] = field(default_factory=list)
    comments: int = 0
    ended: bool = False
    status: int = 0
    task: asyncio.Task[None] | None = None

    async def wait_open(self, within: float = 5.0) -> None:
        """Until the stream answered 200 and sent its first heartbeat (it is then subscribed and
        reading: a fixed sleep raced the subscription on a loaded machine)."""
        deadline = time.monotonic() + within
        while not (self.status == 200 and self.comments >= 1):
            assert not self.ended and time.monotonic() < deadline, f"stream not open (status {self.status})"
            await asyncio.sleep(0.01)

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"got {len(self.events)} events, wanted {count}"
            await asyncio.sleep(0.01)


def open_stream(base: str, headers: dict[str, str]) -> Stream:
    stream = Stream()

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", "/api/v1/events/stream", headers=headers) as r,
        ):
            stream.status = r.status_code
            frame: dict[str, str] = {}
            async for line in r.aiter_lines():
                if line.startswith(":"):
                    stream.comments += 1
                elif line == "":
                    if "data" in frame:
                        stream.events.append(
                            (int(frame["id"]), frame["event"], orjson.loads(frame["data"]), time.monotonic())
                        )
                    frame = {}
                else:
                    key, _, value = line.partition(":")
                    frame[key] = value.lstrip(" ")
        stream.ended = True

    stream.task = asyncio.create_task(read())
    return stream


async def close(stream: Stream) -> None:
    assert stream.task is not None
    stream.task.cancel()
    await asyncio.gather(stream.task, return_exceptions=True)


def login(base: str, email: str, password: str) -> dict[str, str]:
    r = httpx.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_a_write_on_one_instance_reaches_a_stream_on_another_and_resume_is_exact(
    pg_url: str, shared_redis: str, broker_names: BrokerNames, start_server: Callable[..., ServerProcess]
) -> None:
    seed_user(pg_url, 2)  # demo1 and demo2
    env = {
        "TASKHUB_DATABASE_URL": pg_url,
        "TASKHUB_REDIS_URL": shared_redis,
        "TASKHUB_SSE_HEARTBEAT": "0.5",
        "TASKHUB_RATE_LIMIT_ENABLED": "false",
        **broker_names.env(),
    }
    a, b = start_server(**env), start_server(**env)
    ann = login(a.url, "demo1@example.com", "demo-password-2026")
    bob = login(a.url, "demo2@example.com", "demo-password-2026")
    ann_on_b = open_stream(b.url, ann)
    bob_on_b = open_stream(b.url, bob)
    await ann_on_b.wait_open()
    await bob_on_b.wait_open()

    async with httpx.AsyncClient(base_url=a.url, timeout=10) as ca:
        latencies = []
        tasks = []
        for i in range(3):
            sent = time.monotonic()
            r = await ca.post("/api/v1/tasks", json={"title": f"live {i}"}, headers=ann)
            assert r.status_code == 201
            tasks.append(r.json())
            await ann_on_b.wait_for(i + 1, within=2)
            latencies.append(ann_on_b.events[i][3] - sent)
        assert max(latencies) < 1.0, latencies
        assert [(e[1], e[2]["task_id"]) for e in ann_on_b.events] == [("task.created", t["id"]) for t in tasks]
        assert [e[0] for e in ann_on_b.events] == sorted(e[0] for e in ann_on_b.events)

        # Ann goes offline; three more changes happen; she comes back with the last id she saw.
        last_seen = ann_on_b.events[-1][0]
        await close(ann_on_b)
        t = tasks[0]
        assert (await ca.patch(f"/api/v1/tasks/{t['id']}", json={"priority": "high"}, headers=ann)).status_code == 200
        assert (await ca.patch(f"/api/v1/tasks/{t['id']}", json={"status": "done"}, headers=ann)).status_code == 200
        assert (await ca.delete(f"/api/v1/tasks/{tasks[1]['id']}", headers=ann)).status_code == 204
        await asyncio.sleep(0.5)  # published before she reconnects: they come from the replay
        resumed = open_stream(b.url, {**ann, "Last-Event-ID": str(last_seen)})
        await resumed.wait_for(3, within=3)
        # and one live event after the replay
        assert (await ca.patch(f"/api/v1/tasks/{tasks[2]['id']}", json={"title": "x"}, headers=ann)).status_code == 200
        await resumed.wait_for(4, within=2)
        await asyncio.sleep(1)
        assert [(e[1], e[2]["task_id"]) for e in resumed.events] == [
            ("task.updated", t["id"]),
            ("task.completed", t["id"]),
            ("task.deleted", tasks[1]["id"]),
            ("task.updated", tasks[2]["id"]),
        ]
        ids = [e[0] for e in resumed.events]
        assert ids == sorted(set(ids)) and ids[0] > last_seen

        # Bob saw none of Ann's events, only his own.
        r = await ca.post("/api/v1/tasks", json={"title": "bob's"}, headers=bob)
        await bob_on_b.wait_for(1, within=2)
        await asyncio.sleep(0.5)
        assert [(e[1], e[2]["task_id"]) for e in bob_on_b.events] == [("task.created", r.json()["id"])]
        assert bob_on_b.comments >= 1  # heartbeats

        # Logging out on A revokes the token: the stream held on B ends at its next heartbeat.
        assert (await ca.post("/api/v1/auth/logout", headers=ann)).status_code == 204
        deadline = time.monotonic() + 3
        while not resumed.ended:
            assert time.monotonic() < deadline, "the stream outlived its revoked token"
            await asyncio.sleep(0.05)
        assert not bob_on_b.ended
    await close(bob_on_b)
    await close(resumed)
    # Bearer header only: a token in the query string is not accepted
    token = bob["Authorization"].split()[1]
    async with httpx.AsyncClient(timeout=5) as c:
        assert (await c.get(f"{b.url}/api/v1/events/stream?access_token={token}")).status_code == 401
