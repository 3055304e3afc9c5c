"""GraphQL at /graphql through HTTP, on SQLite and PostgreSQL: queries against REST-made data give
the REST values, keyset paging, each mutation and its failure paths, events, errors as problem
types, authentication, rate limits, the depth and cost limits, batching (statements counted),
GraphiQL and introspection settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import Engine

from taskhub.config import Settings
from taskhub.core.errors import PROBLEM_BASE
from tests.conftest import Api, client_for
from tests.helpers import ctx_of, outbox_events

pytestmark = pytest.mark.asyncio

H = dict[str, str]

TASK_FIELDS = (
    "id title description status priority dueDate allDay dueOn tags ownerId createdAt updatedAt completedAt version"
)


@pytest.fixture
async def alice(api: Api) -> H:
    return await api.user("alice@x.io")


@pytest.fixture
async def bob(api: Api) -> H:
    return await api.user("bob@x.io")


async def gql(client: httpx.AsyncClient, query: str, headers: H | None = None, **variables: Any) -> dict[str, Any]:
    """POST a GraphQL request; the HTTP status is always 200 (errors are in the body)."""
    r = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers or {})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


def problem(slug: str, status: int, title: str, **extra: Any) -> dict[str, Any]:
    return {
        "code": slug.upper().replace("-", "_"),
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        **extra,
    }


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


ENUM_FIELDS = {"status", "priority"}


def as_rest(node: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL task node in the REST shape (snake_case keys, enum values lower-case)."""
    out = {}
    for key, value in node.items():
        snake = "".join("_" + c.lower() if c.isupper() else c for c in key)
        out[snake] = value.lower() if snake in ENUM_FIELDS else value
    return out


CREATE = """
mutation($input: CreateTaskInput!, $key: String) {
  createTask(input: $input, idempotencyKey: $key) { replayed task { FIELDS } }
}""".replace("FIELDS", TASK_FIELDS)

UPDATE = """
mutation($id: ID!, $input: UpdateTaskInput!, $v: Int) {
  updateTask(id: $id, input: $input, expectedVersion: $v) { task { FIELDS } }
}""".replace("FIELDS", TASK_FIELDS)

COMPLETE = """
mutation($id: ID!, $v: Int) { completeTask(id: $id, expectedVersion: $v) { task { FIELDS } } }
""".replace("FIELDS", TASK_FIELDS)

DELETE = "mutation($id: ID!, $v: Int) { deleteTask(id: $id, expectedVersion: $v) { deletedId } }"

PAGE = """
query($first: Int!, $after: String, $sort: TaskSort!) {
  tasks(first: $first, after: $after, sort: $sort) {
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor hasPreviousPage startCursor }
  }
}"""


class TestQueries:
    async def test_viewer_task_tasks_and_stats_match_rest(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        made = await api.task(
            alice, title="Report", description="d", priority="high", due_date="2026-12-24T17:00:00+01:00", tags=["Work"]
        )
        await api.task(alice, title="other", status="done")
        rest_task = (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).json()
        rest_me = (await client.get("/api/v1/users/me", headers=alice)).json()
        rest_stats = (await client.get("/api/v1/tasks/stats", headers=alice)).json()
        rest_list = (await client.get("/api/v1/tasks", headers=alice)).json()

        body = await gql(
            client,
            """query($id: ID!) {
              viewer { id email name role isActive timeZone createdAt updatedAt }
              task(id: $id) { FIELDS }
              tasks { edges { node { FIELDS } } pageInfo { hasNextPage } }
              stats { total overdue completedLast7Days byStatus { todo inProgress done } byPriority { low medium high } }
            }""".replace("FIELDS", TASK_FIELDS),
            alice,
            id=made["id"],
        )
        assert "errors" not in body, body
        data = body["data"]
        viewer = as_rest(data["viewer"])
        assert {**viewer, "role": viewer["role"].lower()} == rest_me
        assert as_rest(data["task"]) == rest_task
        assert rest_task["due_date"] == "2026-12-24T16:00:00Z"
        assert [as_rest(e["node"]) for e in data["tasks"]["edges"]] == rest_list["items"]
        assert data["tasks"]["pageInfo"]["hasNextPage"] is False
        stats = data["stats"]
        assert {
            "total": stats["total"],
            "overdue": stats["overdue"],
            "completed_last_7_days": stats["completedLast7Days"],
            "by_status": {"todo": 1, "in_progress": 0, "done": 1},
            "by_priority": stats["byPriority"],
        } == rest_stats
        assert stats["byStatus"] == {"todo": 1, "inProgress": 0, "done": 1}

    async def test_all_day_task_and_time_zone(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        await client.patch("/api/v1/users/me", json={"time_zone": "Europe/Berlin"}, headers=alice)
        made = await api.task(alice, title="Rent", due_date="2027-01-01")
        body = await gql(
            client,
            "query($id: ID!) { viewer { timeZone } task(id: $id) { dueDate allDay dueOn } }",
            alice,
            id=made["id"],
        )
        assert body == {
            "data": {
                "viewer": {"timeZone": "Europe/Berlin"},
                "task": {"dueDate": "2027-01-01T22:59:59.999999Z", "allDay": True, "dueOn": "2027-01-01"},
            }
        }

    async def test_someone_elses_task_is_not_found(self, client: httpx.AsyncClient, api: Api, alice: H, bob: H) -> None:
        theirs = await api.task(bob, title="bob's")
        body = await gql(client, "query($id: ID!) { task(id: $id) { id title } }", alice, id=theirs["id"])
        assert body["data"] == {"task": None}
        error = only_error(body)
        assert error["message"] == f"No task with id {theirs['id']}."
        assert error["path"] == ["task"]
        assert error["extensions"] == problem("task-not-found", 404, "Task not found")

    async def test_filters_match_rest(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        await api.task(alice, title="alpha report", tags=["work"], priority="high")
        await api.task(alice, title="beta", tags=["home"], status="in_progress")
        await api.task(alice, title="gamma REPORT", tags=["work"], status="done", priority="low")
        cases = [
            ("status: [TODO, IN_PROGRESS]", "status=todo&status=in_progress"),
            ("priority: [HIGH, LOW]", "priority=high&priority=low"),
            ('tag: " WORK "', "tag=%20WORK%20"),
            ('q: "report"', "q=report"),
            ('q: "report", status: [DONE]', "q=report&status=done"),
        ]
        for args, params in cases:
            rest = (await client.get(f"/api/v1/tasks?{params}", headers=alice)).json()["items"]
            body = await gql(client, "{ tasks(ARGS) { edges { node { id } } } }".replace("ARGS", args), alice)
            assert [e["node"]["id"] for e in body["data"]["tasks"]["edges"]] == [t["id"] for t in rest], args
            assert rest, args

    async def test_argument_validation_names_the_argument(self, client: httpx.AsyncClient, alice: H) -> None:
        body = await gql(client, '{ tasks(first: 101, tag: "") { edges { cursor } } }', alice)
        error = only_error(body)
        assert error["extensions"]["status"] == 422
        assert error["extensions"]["type"] == PROBLEM_BASE + "validation-error"
        assert [e["loc"] for e in error["extensions"]["errors"]] == [["first"], ["tag"]]
        body = await gql(client, '{ tasks(after: "garbage") { edges { cursor } } }', alice)
        assert only_error(body)["extensions"]["errors"] == [
            {"loc": ["after"], "msg": "invalid cursor", "type": "value_error"}
        ]


class TestPaging:
    @pytest.mark.parametrize("sort", ["PRIORITY_DESC", "DUE_DATE", "CREATED_AT_DESC"])
    async def test_pages_neither_repeat_nor_skip(
        self, client: httpx.AsyncClient, api: Api, alice: H, sort: str
    ) -> None:
        priorities = ["high", "low", "medium", "high", "medium", "low", "high"]
        for i, priority in enumerate(priorities):
            due = f"2026-12-{10 + i % 3:02d}T09:00:00Z" if i % 2 else None  # ties and nulls
            await api.task(alice, title=f"t{i}", priority=priority, due_date=due)
        rest_sort = sort.lower().removesuffix("_desc")
        rest_sort = "-" + rest_sort if sort.endswith("_DESC") else rest_sort
        expected = [
            t["id"]
            for t in (await client.get(f"/api/v1/tasks?limit=100&sort={rest_sort}", headers=alice)).json()["items"]
        ]
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            body = await gql(client, PAGE, alice, first=3, after=after, sort=sort)
            conn = body["data"]["tasks"]
            edges = conn["edges"]
            seen += [e["node"]["id"] for e in edges]
            info = conn["pageInfo"]
            assert info["endCursor"] == edges[-1]["cursor"] and info["startCursor"] == edges[0]["cursor"]
            assert info["hasPreviousPage"] is False
            pages += 1
            if not info["hasNextPage"]:
                break
            after = info["endCursor"]
        assert pages == 3
        assert seen == expected

    async def test_rest_cursor_continues_in_graphql(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        for i in range(5):
            await api.task(alice, title=f"t{i}")
        first = (await client.get("/api/v1/tasks?limit=2", headers=alice)).json()
        nxt = (await client.get(f"/api/v1/tasks?limit=2&cursor={first['next_cursor']}", headers=alice)).json()
        body = await gql(client, PAGE, alice, first=2, after=first["next_cursor"], sort="CREATED_AT_DESC")
        connection = body["data"]["tasks"]
        assert [e["node"]["id"] for e in connection["edges"]] == [t["id"] for t in nxt["items"]]
        # ...and the other way round: the GraphQL end cursor is the REST page's next_cursor.
        assert connection["pageInfo"]["endCursor"] == nxt["next_cursor"]

    async def test_cursor_of_another_sort_is_refused(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        for i in range(3):
            await api.task(alice, title=f"t{i}")
        body = await gql(client, PAGE, alice, first=1, sort="PRIORITY")
        cursor = body["data"]["tasks"]["pageInfo"]["endCursor"]
        body = await gql(client, PAGE, alice, first=1, after=cursor, sort="DUE_DATE")
        error = only_error(body)
        assert error["extensions"]["errors"] == [
            {"loc": ["after"], "msg": "cursor does not match the sort parameter", "type": "value_error"}
        ]


class TestCreate:
    async def test_create_matches_rest_and_writes_the_event(
        self, app: FastAPI, client: httpx.AsyncClient, alice: H
    ) -> None:
        body = await gql(
            client,
            CREATE,
            alice,
            input={
                "title": "  Plan  ",
                "priority": "HIGH",
                "dueDate": "2026-12-01T10:15:00+02:00",
                "tags": [" Work ", "work", "HOME"],
            },
        )
        assert "errors" not in body, body
        payload = body["data"]["createTask"]
        assert payload["replayed"] is False
        task = as_rest(payload["task"])
        r = await client.get(f"/api/v1/tasks/{task['id']}", headers=alice)
        assert r.status_code == 200
        assert task == r.json()
        assert (task["title"], task["priority"], task["due_date"], task["tags"], task["version"]) == (
            "Plan",
            "high",
            "2026-12-01T08:15:00Z",
            ["work", "home"],
            1,
        )
        events = await outbox_events(app)
        assert [(e["type"], e["task_id"], e["version"]) for e in events] == [("task.created", task["id"], 1)]

    @pytest.mark.parametrize(
        ("input_", "loc", "msg"),
        [
            ({"title": "   "}, ["input", "title"], "must be 1..200 characters after trimming"),
            ({"title": "t", "dueDate": "2026-12-24T17:00:00"}, ["input", "dueDate"], "Input should have timezone info"),
            ({"title": "t", "tags": ["x"] * 21}, ["input", "tags"], "at most 20 tags"),
            ({"title": "t", "description": None}, ["input", "description"], "Input should be a valid string"),
        ],
    )
    async def test_validation_error_names_the_field_and_creates_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, alice: H, input_: dict[str, Any], loc: list[str], msg: str
    ) -> None:
        body = await gql(client, CREATE, alice, input=input_)
        assert body["data"] == {"createTask": None}
        error = only_error(body)
        assert error["path"] == ["createTask"]
        errors = error["extensions"].pop("errors")
        assert error["extensions"] == problem("validation-error", 422, "Validation error")
        assert [(e["loc"], e["msg"]) for e in errors] == [(loc, msg)]
        assert error["message"] == "Invalid input: " + ".".join(loc)
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 0
        assert await outbox_events(app) == []

    async def test_idempotent_replay_returns_the_same_task(
        self, app: FastAPI, client: httpx.AsyncClient, alice: H
    ) -> None:
        first = (await gql(client, CREATE, alice, input={"title": "once"}, key="k-1"))["data"]["createTask"]
        again = (await gql(client, CREATE, alice, input={"title": "once"}, key="k-1"))["data"]["createTask"]
        assert again["replayed"] is True and first["replayed"] is False
        assert again["task"] == first["task"]
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 1
        assert len(await outbox_events(app)) == 1
        # The key is the REST Idempotency-Key: the same body over REST replays the same task.
        r = await client.post("/api/v1/tasks", json={"title": "once"}, headers={**alice, "Idempotency-Key": "k-1"})
        assert (r.status_code, r.json()["id"], r.headers["idempotent-replayed"]) == (201, first["task"]["id"], "true")
        other = await gql(client, CREATE, alice, input={"title": "different"}, key="k-1")
        error = only_error(other)
        assert error["extensions"] == problem(
            "idempotency-key-reused",
            422,
            "Idempotency key reused with a different request",
            errors=[{"loc": ["idempotencyKey"], "msg": "key reused with a different body", "type": "value_error"}],
        )

    async def test_bad_idempotency_key_names_the_argument(self, client: httpx.AsyncClient, alice: H) -> None:
        for key, msg in [("", "must be 1..255 characters"), ("k" * 256, "must be 1..255 characters")]:
            error = only_error(await gql(client, CREATE, alice, input={"title": "t"}, key=key))
            assert error["extensions"]["errors"] == [{"loc": ["idempotencyKey"], "msg": msg, "type": "value_error"}]
        error = only_error(await gql(client, CREATE, alice, input={"title": "t"}, key="caf\u00e9"))
        assert error["extensions"]["errors"][0]["loc"] == ["idempotencyKey"]
        assert (await client.get("/api/v1/tasks", headers=alice)).json()["total"] == 0


class TestUpdate:
    async def test_update_matches_rest_and_writes_the_event(
        self, app: FastAPI, client: httpx.AsyncClient, api: Api, alice: H
    ) -> None:
        made = await api.task(alice, title="t", due_date="2026-12-24T17:00:00Z")
        body = await gql(client, UPDATE, alice, id=made["id"], input={"priority": "HIGH", "dueDate": None}, v=1)
        assert "errors" not in body, body
        task = as_rest(body["data"]["updateTask"]["task"])
        assert task == (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).json()
        assert (task["priority"], task["due_date"], task["version"], task["title"]) == ("high", None, 2, "t")
        events = await outbox_events(app)
        assert events[-1]["type"] == "task.updated"
        assert events[-1]["changes"] == {"priority": ["medium", "high"], "due_date": ["2026-12-24T17:00:00Z", None]}

    async def test_stale_version_is_a_precondition_error_and_changes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, api: Api, alice: H
    ) -> None:
        made = await api.task(alice, title="t")
        await client.patch(f"/api/v1/tasks/{made['id']}", json={"title": "u"}, headers=alice)  # version 2
        body = await gql(client, UPDATE, alice, id=made["id"], input={"title": "mine"}, v=1)
        error = only_error(body)
        assert error["extensions"] == problem("version-mismatch", 412, "Task was modified")
        assert error["message"] == "expectedVersion 1 is not the task's current version 2; fetch it again and retry."
        now = (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).json()
        assert (now["title"], now["version"]) == ("u", 2)
        assert [e["type"] for e in await outbox_events(app)] == ["task.created", "task.updated"]

    async def test_other_users_task_is_not_found(self, client: httpx.AsyncClient, api: Api, alice: H, bob: H) -> None:
        theirs = await api.task(bob, title="bob's")
        for query, variables in [
            (UPDATE, {"input": {"title": "x"}}),
            (COMPLETE, {}),
            (DELETE, {}),
        ]:
            error = only_error(await gql(client, query, alice, id=theirs["id"], **variables))
            assert error["extensions"] == problem("task-not-found", 404, "Task not found")
        now = (await client.get(f"/api/v1/tasks/{theirs['id']}", headers=bob)).json()
        assert (now["title"], now["status"], now["version"]) == ("bob's", "todo", 1)

    async def test_invalid_update_names_the_field(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        made = await api.task(alice, title="t")
        error = only_error(await gql(client, UPDATE, alice, id=made["id"], input={"title": None}))
        assert [e["loc"] for e in error["extensions"]["errors"]] == [["input", "title"]]
        error = only_error(await gql(client, UPDATE, alice, id="not-a-uuid", input={"title": "x"}))
        assert error["extensions"]["errors"] == [{"loc": ["id"], "msg": "must be a UUID", "type": "uuid_parsing"}]
        assert (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).json()["version"] == 1


class TestCompleteAndDelete:
    async def test_complete_sets_done_and_writes_task_completed(
        self, app: FastAPI, client: httpx.AsyncClient, api: Api, alice: H
    ) -> None:
        made = await api.task(alice, title="t")
        body = await gql(client, COMPLETE, alice, id=made["id"], v=1)
        task = as_rest(body["data"]["completeTask"]["task"])
        assert task == (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).json()
        assert (task["status"], task["version"]) == ("done", 2)
        assert task["completed_at"] is not None
        events = await outbox_events(app)
        assert (events[-1]["type"], events[-1]["changes"]) == ("task.completed", {"status": ["todo", "done"]})
        stale = only_error(await gql(client, COMPLETE, alice, id=made["id"], v=1))
        assert stale["extensions"]["code"] == "VERSION_MISMATCH"

    async def test_delete_then_not_found_and_stale_version_refused(
        self, app: FastAPI, client: httpx.AsyncClient, api: Api, alice: H
    ) -> None:
        made = await api.task(alice, title="t")
        stale = only_error(await gql(client, DELETE, alice, id=made["id"], v=7))
        assert stale["extensions"]["status"] == 412
        assert (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).status_code == 200
        body = await gql(client, DELETE, alice, id=made["id"], v=1)
        assert body == {"data": {"deleteTask": {"deletedId": made["id"]}}}
        assert (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).status_code == 404
        again = only_error(await gql(client, DELETE, alice, id=made["id"]))
        assert again["extensions"]["code"] == "TASK_NOT_FOUND"
        assert [e["type"] for e in await outbox_events(app)] == ["task.created", "task.deleted"]

    async def test_mutations_run_in_order_each_committed(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        """Two mutation fields in one request: the second sees the first's commit; a failing one
        does not undo the other (one transaction per mutation field)."""
        made = await api.task(alice, title="t")
        body = await gql(
            client,
            """mutation($id: ID!) {
              a: updateTask(id: $id, input: {title: "one"}, expectedVersion: 1) { task { version } }
              b: updateTask(id: $id, input: {title: "two"}, expectedVersion: 1) { task { version } }
            }""",
            alice,
            id=made["id"],
        )
        assert body["data"] == {"a": {"task": {"version": 2}}, "b": None}
        assert only_error(body)["path"] == ["b"]
        assert (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).json()["title"] == "one"


class TestAuthentication:
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
    async def test_unauthenticated_is_a_graphql_error_with_the_problem(
        self, client: httpx.AsyncClient, headers: H
    ) -> None:
        body = await gql(client, "{ viewer { id } stats { total } }", headers)
        assert body["data"] is None  # both are non-null: the first error nulls the whole data
        error = body["errors"][0]
        assert error["path"] in (["viewer"], ["stats"])
        assert error["extensions"] == problem("unauthorized", 401, "Unauthorized")
        created = await gql(client, CREATE, headers, input={"title": "t"})
        assert only_error(created)["extensions"]["code"] == "UNAUTHORIZED"

    async def test_token_from_a_query_string_is_ignored(self, client: httpx.AsyncClient, api: Api) -> None:
        await api.register("q@x.io")
        token = (await api.login("q@x.io"))["access_token"]
        r = await client.get("/graphql", params={"query": "{ viewer { id } }", "access_token": token})
        assert r.status_code == 200
        assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHORIZED"

    async def test_get_runs_queries_not_mutations(self, client: httpx.AsyncClient, alice: H) -> None:
        r = await client.get("/graphql", params={"query": "{ viewer { email } }"}, headers=alice)
        assert r.json() == {"data": {"viewer": {"email": "alice@x.io"}}}
        assert r.headers["cache-control"] == "private, no-cache"
        made = await Api(client).task(alice, title="kept")
        mutation = 'mutation { deleteTask(id: "ID") { deletedId } }'.replace("ID", made["id"])
        r = await client.get("/graphql", params={"query": mutation}, headers=alice)
        assert r.status_code == 400  # a GET never changes anything (strawberry refuses the operation type)
        assert (await client.get(f"/api/v1/tasks/{made['id']}", headers=alice)).status_code == 200


class TestLimits:
    async def test_depth_over_the_limit_is_refused(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(settings_factory(graphql_max_depth=3))
        async with client_for(app) as client:
            headers = await Api(client).user("deep@x.io")
            ok = await gql(client, "{ tasks { edges { node { id } } } }", headers)  # depth 3
            assert "errors" not in ok, ok
            body = await gql(client, "{ tasks { edges { node { owner { id } } } } }", headers)  # depth 4
        assert body["data"] is None
        error = only_error(body)
        assert error["message"] == "'anonymous' exceeds maximum operation depth of 3"
        assert error["extensions"] == problem("query-too-deep", 400, "Query too deep")

    async def test_default_depth_admits_the_deepest_query(self, client: httpx.AsyncClient, alice: H) -> None:
        body = await gql(
            client, "{ tasks { edges { node { owner { id } } } } notifications { edges { node { id } } } }", alice
        )
        assert "errors" not in body, body

    async def test_cost_over_the_limit_is_refused_before_anything_runs(
        self, quiet: tuple[FastAPI, httpx.AsyncClient], alice_quiet: H
    ) -> None:
        app, client = quiet
        alice = alice_quiet
        # Per task: edges 1 + node 1 + 12 fields + owner (1 + 7) = 22; x100 + 1 = 2,201 per alias.
        twelve = "id title description status priority dueDate tags ownerId createdAt updatedAt completedAt version"
        node = "edges { node { FIELDS owner { id email name role isActive createdAt updatedAt } } }".replace(
            "FIELDS", twelve
        )
        two = "query($n: Int!) { a: tasks(first: $n) { NODE } b: tasks(first: $n) { NODE } }".replace("NODE", node)
        assert "errors" not in await gql(client, two, alice, n=100)  # 4,402
        three = (
            "query($n: Int!) { a: tasks(first: $n) { NODE } b: tasks(first: $n) { NODE } c: tasks { NODE } }".replace(
                "NODE", node
            )
        )
        with count_statements(app) as statements:
            body = await gql(client, three, alice, n=100)  # 4,402 + (1 + 20 * 22) = 4,843: allowed
            assert "errors" not in body
            body = await gql(client, three.replace("c: tasks {", "c: tasks(first: 30) {"), alice, n=100)
        assert body["data"] is None
        error = only_error(body)
        assert error["extensions"] == problem(
            "query-too-costly", 400, "Query too costly", cost=4402 + 1 + 30 * 22, max_cost=5000
        )
        assert len(statements) == 3  # the two allowed ones' statements; nothing for the refused one

    async def test_first_above_the_maximum_counts_as_the_maximum(self, client: httpx.AsyncClient, alice: H) -> None:
        body = await gql(client, "{ tasks(first: 1000000) { edges { cursor } } }", alice)
        error = only_error(body)
        assert error["extensions"]["code"] == "VALIDATION_ERROR"  # the field refuses it, not the cost
        assert error["extensions"]["errors"][0]["loc"] == ["first"]

    async def test_rate_limit_applies(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(settings_factory(rate_limit_enabled=True, rate_limit_user="2 per minute"))
        async with client_for(app) as client:
            headers = await Api(client).user("rl@x.io")
            codes = []
            for _ in range(3):
                r = await client.post("/graphql", json={"query": "{ viewer { id } }"}, headers=headers)
                codes.append(r.status_code)
        assert codes == [200, 200, 429]
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == PROBLEM_BASE + "rate-limited"


@pytest.fixture
async def quiet(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app whose engines run only what requests ask for (no relay, no housekeeping in the
    background), so that statements can be counted, and its client."""
    app = await app_factory(settings_factory(relay_enabled=False, purge_interval=0))
    async with client_for(app) as client:
        yield app, client


@pytest.fixture
async def alice_quiet(quiet: tuple[FastAPI, httpx.AsyncClient]) -> H:
    return await Api(quiet[1]).user("alice@x.io")


@contextmanager
def count_statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app's engines (primary and readers) run inside the block."""
    ctx = ctx_of(app)
    engines: list[Engine] = list({id(e.sync_engine): e.sync_engine for e in [ctx.db.primary, *ctx.db.readers]}.values())
    seen: list[str] = []
    contexts: list[Any] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        # A read engine made with execution_options() shares its parent's event dispatch: the
        # same execution reaches this listener once per registration.
        if not any(context is seen_context for seen_context in contexts):
            contexts.append(context)
            seen.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


class TestBatching:
    async def test_a_page_with_owners_is_a_constant_number_of_statements(
        self, quiet: tuple[FastAPI, httpx.AsyncClient], alice_quiet: H
    ) -> None:
        app, client = quiet
        alice = alice_quiet
        for i in range(12):
            await Api(client).task(alice, title=f"t{i}")
        with_owner = "query($n: Int!) { tasks(first: $n) { edges { node { id owner { id email } } } } }"
        without_owner = "query($n: Int!) { tasks(first: $n) { edges { node { id } } } }"
        await gql(client, without_owner, alice, n=1)  # authentication decision now cached
        counts = {}
        for name, query, n in [("bare", without_owner, 2), ("small", with_owner, 2), ("large", with_owner, 12)]:
            with count_statements(app) as statements:
                body = await gql(client, query, alice, n=n)
            assert len(body["data"]["tasks"]["edges"]) == n
            counts[name] = statements
        # The owner is the caller, authenticated already: no statement, whatever the page size.
        assert len(counts["small"]) == len(counts["large"]) == len(counts["bare"]) == 1
        assert not [s for s in counts["large"] if "FROM users" in s]


class TestNotifications:
    async def test_notifications_match_rest(self, client: httpx.AsyncClient, api: Api, alice: H) -> None:
        for i in range(3):
            made = await api.task(alice, title=f"n{i}")
            assert "errors" not in await gql(client, COMPLETE, alice, id=made["id"])

        async def all_three() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await client.get("/api/v1/notifications", headers=alice)).json()["items"]
            return items if len(items) == 3 else None

        deadline = asyncio.get_running_loop().time() + 10
        rest = await all_three()
        while rest is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            rest = await all_three()
        assert rest is not None
        q = "query($after: String) { notifications(first: 2, after: $after) { edges { node { id taskId kind title createdAt readAt } } pageInfo { hasNextPage endCursor } } }"
        first = (await gql(client, q, alice))["data"]["notifications"]
        second = (await gql(client, q, alice, after=first["pageInfo"]["endCursor"]))["data"]["notifications"]
        assert (first["pageInfo"]["hasNextPage"], second["pageInfo"]["hasNextPage"]) == (True, False)
        nodes = [e["node"] for e in first["edges"] + second["edges"]]
        assert [as_rest(n) | {"kind": n["kind"].lower()} for n in nodes] == rest
        assert {n["kind"] for n in nodes} == {"COMPLETED"}


class TestSettings:
    async def test_graphiql_in_development_with_its_own_csp(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/graphql", headers={"Accept": "text/html"})
        assert r.status_code == 200
        assert "graphiql" in r.text.lower()
        csp = r.headers["content-security-policy"]
        assert "script-src https://unpkg.com 'sha256-" in csp
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]

    async def test_no_graphiql_in_production(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        app = await app_factory(settings_factory(env="production"))
        async with client_for(app) as client:
            r = await client.get("/graphql", headers={"Accept": "text/html"})
        assert r.status_code == 404
        assert "graphiql" not in r.text.lower()

    async def test_introspection_can_be_turned_off(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        query = "{ __schema { queryType { name } } }"
        async with client_for(await app_factory(settings_factory())) as client:
            assert (await gql(client, query)) == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
        app = await app_factory(settings_factory(graphql_introspection=False))
        async with client_for(app) as client:
            body = await gql(client, query)
        assert body["data"] is None
        assert body["errors"][0]["message"].startswith("GraphQL introspection has been disabled")
        assert {e["extensions"]["type"] for e in body["errors"]} == {PROBLEM_BASE + "invalid-query"}

    async def test_graphql_is_not_in_the_openapi_document(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if "graphql" in p]


class TestUnexpectedErrors:
    @pytest.mark.in_process  # patches the service layer of the process that serves the request
    async def test_a_bug_is_a_bare_internal_error(
        self, client: httpx.AsyncClient, alice: H, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from taskhub.tasks import service as task_service

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internals at /srv/app.py")

        monkeypatch.setattr(task_service, "stats", broken)
        body = await gql(client, "{ viewer { email } stats { total } }", alice)
        assert body["data"] is None  # stats is non-null: the error nulls the whole data
        error = only_error(body)
        assert error["message"] == "Internal server error"
        assert error["extensions"] == problem("internal-server-error", 500, "Internal Server Error")
        assert "secret" not in str(body)
