"""The "floor": a bare ASGI app answering every request with a fixed 20-item task page.

Served by the same server and options as Taskhub, it measures what the HTTP stack, the loopback
and the load generator cost on their own; every scenario is reported as a ratio to it.
"""

from __future__ import annotations

import json
from typing import Any

_ITEM = {
    "id": "019ac9a1-0000-7000-8000-{:012d}",
    "title": "Review budget report",
    "description": "Demo task about review budget report.",
    "status": "todo",
    "priority": "medium",
    "due_date": "2026-12-24T16:00:00Z",
    "tags": ["work", "finance"],
    "owner_id": "019ac9a0-0000-7000-8000-000000000001",
    "created_at": "2026-11-29T08:15:00Z",
    "updated_at": "2026-11-29T08:15:00Z",
    "completed_at": None,
    "version": 1,
}
BODY = json.dumps(
    {
        "items": [{**_ITEM, "id": _ITEM["id"].format(i)} for i in range(20)],
        "limit": 20,
        "page": 1,
        "total": 100,
        "next_cursor": None,
    },
    separators=(",", ":"),
).encode()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer 200 with :data:`BODY` (lifespan events acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the request body
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def create_app() -> Any:
    """Factory form, for servers started with ``--factory``."""
    return app
