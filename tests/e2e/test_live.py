"""Live updates in the dashboard: changes made through the API in another session show up without
a reload (only the affected rows change), and the unread-notification badge counts up."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PageProbe, Server
from tests.e2e.test_dashboard import item, open_signed_in
from tests.e2e.test_task_rows import ROWS, mark_rows, marks

pytestmark = pytest.mark.e2e


def test_changes_made_elsewhere_appear_without_reload_and_the_badge_counts(
    server: Server, page: Page, probe: PageProbe
) -> None:
    server.register("live@example.com", "Live")
    token = server.token("live@example.com")  # another session of the same person (like a phone)
    first = server.create_task(token, title="Already there")
    open_signed_in(page, server, "live@example.com")
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Already there"])
    expect(page.locator("#notif-badge")).to_be_hidden()
    mark_rows(page)
    list_loads = probe.count("GET", "/api/v1/tasks")

    made = server.create_task(token, title="Made elsewhere")
    expect(page.locator(f"{ROWS} .task-title")).to_have_text(["Made elsewhere", "Already there"], timeout=5000)
    assert marks(page) == [None, "Already there"]  # the old row kept its node
    mark_rows(page)

    auth = {"Authorization": f"Bearer {token}"}
    with server.api() as api:
        # done elsewhere: it leaves the Inbox (an open view); the other row keeps its node
        assert api.patch(f"/api/v1/tasks/{first['id']}", json={"status": "done"}, headers=auth).status_code == 200
        expect(item(page, "Already there")).to_have_count(0, timeout=5000)
        assert marks(page) == ["Made elsewhere"]
        expect(page.locator("#notif-badge")).to_have_text("1 unread notification", timeout=5000)

        assert api.patch(f"/api/v1/tasks/{made['id']}", json={"status": "done"}, headers=auth).status_code == 200
        expect(page.locator("#notif-badge")).to_have_text("2 unread notifications", timeout=5000)

        assert api.delete(f"/api/v1/tasks/{made['id']}", headers=auth).status_code == 204
        expect(page.locator(f"{ROWS} .task-title")).to_have_count(0, timeout=5000)
        assert api.post("/api/v1/notifications/read", json={}, headers=auth).json() == {"marked": 2, "unread": 0}

    assert probe.count("GET", "/api/v1/tasks") == list_loads  # no list reload: row by row
    assert probe.errors == []

    # Signing out stops the stream: no "session ended" error replaces the sign-out message.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#auth-msg")).to_have_text("You have signed out.")
    page.wait_for_timeout(1500)
    expect(page.locator("#auth-msg")).to_have_text("You have signed out.")
    expect(page.locator("#notif-badge")).to_be_hidden()
    assert probe.errors == []
