"""``/events/stream`` in embedded mode (in-process relay and hub), driven over ASGI: live events,
resume, and the end of the stream when the access token expires."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI

from taskhub.config import Settings
from tests.conftest import Api, client_for


class AsgiStream:
    """Calls the ASGI app for one streaming GET and collects the body as it is sent."""

    def __init__(self, app: FastAPI, path: str, headers: dict[str, str]) -> None:
        self.status = 0
        self.chunks: list[bytes] = []
        self.done = asyncio.Event()
        self._disconnect = asyncio.Event()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if not hasattr(self, "_sent_request"):
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.done.set()

    def events(self) -> list[tuple[int, str, dict[str, Any]]]:
        out = []
        for block in b"".join(self.chunks).decode().split("\n\n"):
            fields = dict(
                line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
            )
            if "data" in fields:
                out.append((int(fields["id"]), fields["event"], orjson.loads(fields["data"])))
        return out

    async def close(self) -> None:
        self._disconnect.set()
        await asyncio.wait_for(self.task, timeout=5)


async def wait_events(stream: AsgiStream, count: int, within: float = 5.0) -> list[tuple[int, str, dict[str, Any]]]:
    deadline = time.monotonic() + within
    while len(stream.events()) < count:
        assert time.monotonic() < deadline, stream.chunks
        await asyncio.sleep(0.02)
    return stream.events()


async def test_embedded_stream_is_live_resumes_exactly_and_ends_when_the_token_expires(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    app = await app_factory(settings_factory(access_token_ttl=4, sse_heartbeat=0.5))
    async with client_for(app) as client:
        api = Api(client)
        h = await api.user("stream@x.io")
        started = time.monotonic()
        live = AsgiStream(app, "/api/v1/events/stream", h)
        await asyncio.sleep(0.1)
        first = await api.task(h, title="one")
        [(seq1, kind, data)] = await wait_events(live, 1)
        assert (kind, data["task_id"], data["type"]) == ("task.created", first["id"], "task.created")
        second = await api.task(h, title="two")
        third = await api.task(h, title="three")
        events = await wait_events(live, 3)
        assert [e[2]["task_id"] for e in events] == [first["id"], second["id"], third["id"]]
        assert [e[0] for e in events] == [seq1, seq1 + 1, seq1 + 2]
        assert live.status == 200
        # Resume after the first: exactly the second and third, then live again, no duplicate.
        resumed = AsgiStream(app, "/api/v1/events/stream", {**h, "Last-Event-ID": str(seq1)})
        assert [e[2]["task_id"] for e in await wait_events(resumed, 2)] == [second["id"], third["id"]]
        fourth = await api.task(h, title="four")
        got = await wait_events(resumed, 3)
        await asyncio.sleep(0.3)
        assert [e[2]["task_id"] for e in resumed.events()] == [second["id"], third["id"], fourth["id"]]
        assert [e[0] for e in got] == [seq1 + 1, seq1 + 2, seq1 + 3]
        # The access token lives 4 s: both streams end then, by themselves.
        await asyncio.wait_for(live.done.wait(), timeout=8)
        await asyncio.wait_for(resumed.done.wait(), timeout=2)
        assert 3.0 <= time.monotonic() - started < 7.5
        assert b": heartbeat" in b"".join(live.chunks)
        await live.close()
        await resumed.close()
