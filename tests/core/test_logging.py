"""Log lines carry the request id and user id of the request (or the event) they were written for."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import LogCapture

from taskhub.core import observability
from taskhub.core.observability import add_request_context, bind_user, event_scope, request_id_var, user_id_var


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    capture = LogCapture()
    structlog.reset_defaults()  # an app of an earlier test may have configured a level filter
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, add_request_context, capture])
    yield capture
    structlog.reset_defaults()


def test_lines_of_a_request_carry_its_ids(captured: LogCapture) -> None:
    log = structlog.get_logger("t")
    log.info("outside")
    rid, uid = request_id_var.set("req-1"), user_id_var.set(None)
    try:
        log.info("anonymous")
        scope: dict[str, object] = {}
        user = uuid.uuid4()
        bind_user(scope, user)
        log.info("authenticated")
        log.info("explicit", request_id="other")  # an explicit value wins
    finally:
        user_id_var.reset(uid)
        request_id_var.reset(rid)
    log.info("after")
    assert [e.get("request_id") for e in captured.entries] == [None, "req-1", "req-1", "other", None]
    assert [e.get("user_id") for e in captured.entries] == [None, None, str(user), str(user), None]
    assert scope == {"state": {"user_id": str(user)}}


def test_event_scope_carries_the_event_and_its_request(captured: LogCapture) -> None:
    log = structlog.get_logger("t")
    event = {"event_id": "ev-1", "type": "task.created"}
    assert observability.event_span_factory is None  # tracing off: headers pass through
    with event_scope("process q", event, {"x-request-id": "req-9", "x-taskhub-attempt": 2}) as out:
        log.info("handled")
        assert request_id_var.get() == "req-9"  # an outbox row written here would carry it on
    log.info("after")
    assert out == {"x-request-id": "req-9", "x-taskhub-attempt": "2"}
    assert (captured.entries[0]["event_id"], captured.entries[0]["request_id"]) == ("ev-1", "req-9")
    assert "event_id" not in captured.entries[1] and "request_id" not in captured.entries[1]
