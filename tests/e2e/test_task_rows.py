"""The task list renders rows by key (task id): a change to one task touches only that task's row.

Each row's ``<li>`` is marked with a JavaScript property (``__mark``); a node that was rebuilt loses
it. So "still marked" means "the very same DOM node", and "unmarked" means "rendered anew".
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PageProbe, Server
from tests.e2e.test_dashboard import delete_now, item, open_signed_in

pytestmark = pytest.mark.e2e

ROWS = "#task-list > li"


def mark_rows(page: Page) -> None:
    """Mark every shown row's node with its task's title."""
    page.locator(ROWS).evaluate_all(
        "els => els.forEach(e => { e.__mark = e.querySelector('.task-title').textContent; })"
    )


def marks(page: Page) -> list[str | None]:
    """Each shown row's mark, in display order (None: the node is not one that was marked)."""
    found: list[str | None] = page.locator(ROWS).evaluate_all("els => els.map(e => e.__mark || null)")
    return found


def wait_for_reload(page: Page) -> None:
    """Wait until the list's load (started by a write) has answered and been rendered."""
    expect(page.locator("#task-list")).not_to_have_attribute("aria-busy", "true")


def test_a_write_through_the_ui_rebuilds_only_the_written_row(server: Server, page: Page, probe: PageProbe) -> None:
    server.register("keyed@example.com", "Keyed")
    token = server.token("keyed@example.com")
    for title in ("Alpha", "Bravo", "Charlie"):
        server.create_task(token, title=title)
    open_signed_in(page, server, "keyed@example.com")
    page.get_by_role("link", name="All", exact=True).click()  # done tasks stay in this view
    expect(page.locator("#tasks-heading")).to_have_text("All tasks")
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Charlie", "Bravo", "Alpha"])
    mark_rows(page)

    # Mark Bravo done: the list is loaded again, yet only Bravo's row is new.
    loads = probe.count("GET", "/api/v1/tasks")
    item(page, "Bravo").locator(".task-check").click()  # the row is rendered anew: check() would lose it
    expect(item(page, "Bravo").locator(".task-msg")).to_have_text("Marked as done.")
    wait_for_reload(page)
    assert probe.count("GET", "/api/v1/tasks") == loads + 1
    expect(item(page, "Bravo").locator(".task-check")).to_be_checked()
    assert marks(page) == ["Charlie", None, "Alpha"]
    mark_rows(page)

    # Rename Charlie in the form: only Charlie's row is new; Bravo keeps its node and, as before,
    # a load clears the messages of the rows the write was not about.
    item(page, "Charlie").get_by_role("button", name="Edit").click()
    page.get_by_label("Title", exact=True).fill("Charlie renamed")
    page.get_by_role("button", name="Save changes").click()
    expect(item(page, "Charlie renamed").locator(".task-msg")).to_have_text("Changes saved.")
    wait_for_reload(page)
    expect(item(page, "Bravo").locator(".task-msg")).to_be_empty()
    assert marks(page) == [None, "Bravo", "Alpha"]
    mark_rows(page)

    # Another sort shows the same tasks in another order: the same nodes, moved.
    page.locator("#filter-sort").select_option("created_at")
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Alpha", "Bravo", "Charlie renamed"])
    assert marks(page) == ["Alpha", "Bravo", "Charlie renamed"]

    # Delete Alpha: its row goes, the others stay; a reload on tab focus changes nothing either.
    delete_now(page, "Alpha")
    wait_for_reload(page)
    expect(page.locator("#list-count")).to_have_text("2 tasks")
    assert marks(page) == ["Bravo", "Charlie renamed"]
    with page.expect_response(lambda r: "/api/v1/tasks?" in r.url):
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    wait_for_reload(page)
    assert marks(page) == ["Bravo", "Charlie renamed"]
    assert probe.errors == []


# The store's actions, called as the live-updates feature will call them (from a module of the page).
ACTIONS = "await import('/static/js/tasks/actions.js')"
STORE = "(await import('/static/js/store.js')).store"


def test_store_actions_patch_one_row_without_a_request(server: Server, page: Page, probe: PageProbe) -> None:
    server.register("store@example.com", "Store")
    token = server.token("store@example.com")
    tasks = {t: server.create_task(token, title=t) for t in ("Alpha", "Bravo", "Charlie")}
    open_signed_in(page, server, "store@example.com")
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Charlie", "Bravo", "Alpha"])
    expect(page.locator("#list-count")).to_have_text("3 tasks")
    mark_rows(page)
    requests = len(probe.requests)

    def run(body: str, arg: Any = None) -> Any:
        return page.evaluate(f"async (arg) => {{ const actions = {ACTIONS}; const store = {STORE}; {body} }}", arg)

    # The same task again (no field changed): nothing is re-rendered.
    assert run("return actions.taskUpserted(store.get().list.byId[arg]);", tasks["Bravo"]["id"]) is False
    assert marks(page) == ["Charlie", "Bravo", "Alpha"]

    # Bravo changed (as an event would say): only its row is new, in its place; focus stays on its button.
    item(page, "Bravo").get_by_role("button", name="Edit").focus()
    changed = {**tasks["Bravo"], "title": "Bravo, changed elsewhere", "priority": "high", "version": 2}
    assert run("return actions.taskUpserted(arg);", changed) is False
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Charlie", "Bravo, changed elsewhere", "Alpha"])
    expect(item(page, "Bravo, changed elsewhere").locator(".badge.prio-high")).to_have_text("High priority")
    expect(page.get_by_role("button", name="Edit: Bravo, changed elsewhere")).to_be_focused()
    assert marks(page) == ["Charlie", None, "Alpha"]
    mark_rows(page)

    # A message on one row does not rebuild it (nor any other).
    run("actions.messageShown(arg, 'Changed by someone else.', 'info');", tasks["Charlie"]["id"])
    expect(item(page, "Charlie").locator(".task-msg")).to_have_text("Changed by someone else.")
    assert marks(page) == ["Charlie", "Bravo, changed elsewhere", "Alpha"]

    # A task that is not shown is inserted at the top and counted; the other rows stay.
    new = {**tasks["Alpha"], "id": "00000000-0000-7000-8000-000000000001", "title": "Delta"}
    assert run("return actions.taskUpserted(arg);", new) is True
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Delta", "Charlie", "Bravo, changed elsewhere", "Alpha"])
    expect(page.locator("#list-count")).to_have_text("4 tasks")
    assert marks(page) == [None, "Charlie", "Bravo, changed elsewhere", "Alpha"]

    # A removed task takes its row away, and only its row.
    run("actions.taskRemoved(arg);", tasks["Alpha"]["id"])
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Delta", "Charlie", "Bravo, changed elsewhere"])
    expect(page.locator("#list-count")).to_have_text("3 tasks")
    assert marks(page) == [None, "Charlie", "Bravo, changed elsewhere"]
    expect(item(page, "Charlie").locator(".task-msg")).to_have_text("Changed by someone else.")

    # A load with the same tasks in another order moves the nodes; the focused button keeps focus,
    # and the load clears the row messages (as it always did).
    page.get_by_role("button", name="Edit: Bravo, changed elsewhere").focus()
    run(
        "const { list } = store.get();"
        "actions.listLoaded({ items: [...list.ids].reverse().map((id) => list.byId[id]),"
        " total: list.total, page: 1, filtered: false });"
    )
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Bravo, changed elsewhere", "Charlie", "Delta"])
    assert marks(page) == ["Bravo, changed elsewhere", "Charlie", None]
    expect(page.get_by_role("button", name="Edit: Bravo, changed elsewhere")).to_be_focused()
    expect(item(page, "Charlie").locator(".task-msg")).to_be_empty()

    # None of this asked the server anything.
    assert probe.requests[requests:] == []
    assert probe.errors == []
