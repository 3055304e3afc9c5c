"""The dashboard in a real Chromium against a real ``taskhub serve`` (see conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, PageProbe, Server, watch

pytestmark = pytest.mark.e2e


# ---- helpers -------------------------------------------------------------------------------------


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.locator("#signin-email").fill(email)
    page.locator("#signin-password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def open_signed_in(page: Page, server: Server, email: str, password: str = PASSWORD) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#signin-heading")).to_be_visible()
    sign_in(page, email, password)
    expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome back!")


def dismiss_toast(page: Page, text: str) -> None:
    """The undo toast says ``text``; dismissing it carries the action out now (a delete is sent)."""
    expect(page.locator("#toast-text")).to_have_text(text)
    page.locator("#toast-close").click()
    expect(page.locator("#toast")).to_be_hidden()


def delete_now(page: Page, title: str) -> None:
    """Delete a task from its row and dismiss the undo toast, so the DELETE is sent at once."""
    row = item(page, title)
    if row.locator(".task-more").is_visible():
        row.locator(".task-more").click()
    row.get_by_role("button", name="Delete").click()
    dismiss_toast(page, f"Deleted “{title}”.")


def item(page: Page, title: str) -> Any:
    return page.locator("#task-list > li").filter(
        has=page.locator(".task-title", has_text=re.compile(f"^{re.escape(title)}$"))
    )


def create_task(
    page: Page,
    title: str,
    *,
    description: str = "",
    priority: str | None = None,
    due: str | None = None,
    due_time: str | None = None,
    tags: str = "",
) -> None:
    if page.locator("#editor").is_hidden():
        page.get_by_role("button", name="New task").click()
    expect(page.locator("#editor-heading")).to_have_text("New task")
    page.get_by_label("Title", exact=True).fill(title)
    page.locator("#task-description").fill(description)
    if priority:
        page.locator("#task-priority").select_option(priority)
    if due:
        page.locator("#task-due").fill(due)
    if due_time:
        page.locator("#task-due-time").fill(due_time)
    page.locator("#task-tags").fill(tags)
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-form-msg")).to_have_text(f"Created “{title}”. Add another, or close the form.")
    expect(item(page, title)).to_have_count(1)


# ---- scenarios -----------------------------------------------------------------------------------


def test_user_journey(server: Server, page: Page, probe: PageProbe, shots: Callable[..., None]) -> None:
    """Sign up, sign in, create, edit, filter, complete, delete, reload (still signed in), sign out."""
    page.goto(server.url + "/")
    expect(page.locator("#signin-heading")).to_be_visible()
    assert page.title() == "Sign in · Taskhub"
    # The one console error of a signed-out load: Chromium logs the expected 401 of /auth/refresh.
    assert len(probe.failed_loads) == 1 and "status of 401" in probe.failed_loads[0]
    assert "/api/v1/auth/refresh" in probe.failed_loads[0]
    shots(page, "signin")

    # sign up
    page.get_by_role("button", name="Create an account").click()
    page.locator("#signup-name").fill("Ann Example")
    page.locator("#signup-email").fill("ann@example.com")
    page.locator("#signup-password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#auth-msg")).to_have_text(
        "Account created for ann@example.com. Sign in with your new password."
    )
    expect(page.locator("#signin-email")).to_have_value("ann@example.com")

    # a missing field: singular or plural by count
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-msg")).to_have_text("Fill in the highlighted field.")
    page.locator("#signin-email").fill("")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-msg")).to_have_text("Fill in the 2 highlighted fields.")
    page.locator("#signin-email").fill("ann@example.com")

    # a wrong password is said in words next to the form
    page.locator("#signin-password").fill("not the password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-msg")).to_have_text("The email or password is incorrect.")

    # sign in: a first sign-in right after signing up is not a "welcome back"
    sign_in(page, "ann@example.com")
    expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome to Taskhub, Ann Example!")
    expect(page.locator("#whoami")).to_have_text("Ann Example (ann@example.com)")
    expect(page.locator("#nav-admin")).to_be_hidden()
    expect(page.locator("#empty-title")).to_have_text("No tasks yet")
    expect(page.locator("#empty-action")).to_have_text("Create a task")
    shots(page, "tasks-empty")

    # create three tasks (the due date is typed in the person's own zone: Europe/Berlin, UTC+1;
    # a year far ahead, so that the labels do not depend on the day the test runs)
    create_task(
        page, "Write the report", priority="high", due="2031-12-24", due_time="17:00", tags="Work, urgent, work"
    )
    create_task(page, "Buy milk", priority="low")
    create_task(page, "Call the plumber", description="Kitchen sink leaks", tags="home")
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#editor")).to_be_hidden()
    expect(page.locator("#task-list .task-title")).to_have_text(["Call the plumber", "Buy milk", "Write the report"])
    expect(page.locator("#list-count")).to_have_text("3 tasks")
    expect(page.locator("#pager")).to_be_hidden()  # one page: no pager
    report = item(page, "Write the report")
    expect(report.locator(".due")).to_have_text("Dec 24, 2031 5:00 PM")
    expect(report.locator(".tag")).to_have_text(["#work", "#urgent"])
    expect(report.locator(".task-check")).not_to_be_checked()

    token = server.token("ann@example.com")
    stored = {t["title"]: t for t in server.tasks(token)["items"]}
    assert stored["Write the report"]["due_date"] == "2031-12-24T16:00:00Z"
    assert stored["Write the report"]["tags"] == ["work", "urgent"]
    assert stored["Write the report"]["priority"] == "high"
    assert stored["Call the plumber"]["description"] == "Kitchen sink leaks"

    # edit one: the form is filled with the task, in local time
    item(page, "Buy milk").get_by_role("button", name="Edit").click()
    expect(page.locator("#editor-heading")).to_have_text("Edit task")
    expect(page.get_by_label("Title", exact=True)).to_have_value("Buy milk")
    expect(page.locator("#task-priority")).to_have_value("low")
    page.get_by_label("Title", exact=True).fill("Buy oat milk")
    page.locator("#task-status").select_option("in_progress")
    page.locator("#task-due").fill("2031-12-01")
    page.locator("#task-due-time").fill("09:30")
    page.locator("#task-tags").fill("shop")
    shots(page, "edit")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#list-msg")).to_have_text("Saved “Buy oat milk”.")
    expect(page.locator("#editor")).to_be_hidden()
    edited = item(page, "Buy oat milk")
    expect(edited.locator(".task-msg")).to_have_text("Changes saved.")
    expect(edited.locator(".badge").first).to_have_text("In progress")
    expect(edited.locator(".due")).to_have_text("Dec 1, 2031 9:30 AM")
    stored = {t["title"]: t for t in server.tasks(token)["items"]}
    assert stored["Buy oat milk"]["due_date"] == "2031-12-01T08:30:00Z"
    assert stored["Buy oat milk"]["status"] == "in_progress"
    assert stored["Buy oat milk"]["version"] == 2

    # filter by priority, then search, then clear
    page.locator("#more-filters summary").click()
    page.locator("#filter-priority").select_option("high")
    expect(page.locator("#list-count")).to_have_text("1 task")
    expect(page.locator("#list-msg")).to_be_empty()  # "Saved “Buy oat milk”." was about the old view
    expect(page.locator("#task-list .task-title")).to_have_text(["Write the report"])
    assert "priority=high" in page.url
    page.locator("#filter-priority").select_option("")
    page.get_by_label("Search", exact=True).fill("SINK")  # searches the description too, case-insensitively
    expect(page.locator("#list-count")).to_have_text("1 task")
    expect(page.locator("#task-list .task-title")).to_have_text(["Call the plumber"])
    page.get_by_label("Search", exact=True).fill("nothing like this")
    expect(page.locator("#empty-title")).to_have_text("No tasks match these filters")
    page.locator("#empty-action").click()
    expect(page.locator("#list-count")).to_have_text("3 tasks")
    page.locator("#filter-sort").select_option("-priority")
    expect(page.locator("#task-list .task-title")).to_have_text(
        ["Write the report", "Call the plumber", "Buy oat milk"]
    )

    # complete one: it leaves the Inbox, with an undo toast; Undo brings it back; then again
    # click, not check(): the row leaves the view at once, so its box is never seen checked
    item(page, "Write the report").get_by_role("checkbox", name="Mark done: Write the report").click()
    expect(page.locator("#toast-text")).to_have_text("Completed “Write the report”.")
    expect(item(page, "Write the report")).to_have_count(0)
    page.locator("#toast-undo").click()
    expect(item(page, "Write the report").locator(".task-msg")).to_have_text("Undone: not done.")
    expect(item(page, "Write the report").locator(".task-check")).not_to_be_checked()
    item(page, "Write the report").locator(".task-check").click()
    dismiss_toast(page, "Completed “Write the report”.")
    expect(item(page, "Write the report")).to_have_count(0)
    expect(page.locator("#list-count")).to_have_text("2 tasks")

    # the stats chart follows the writes
    expect(page.locator("#stat-total")).to_have_text("3")
    expect(page.locator("#stat-week")).to_have_text("1")
    expect(page.locator(".chart").first.locator(".bar-value")).to_have_text(["1", "1", "1"])
    expect(page.locator(".chart").nth(1).locator(".bar-value")).to_have_text(["1", "1", "1"])
    assert page.locator(".bar[data-key=done] .bar-fill").evaluate("e => e.style.width") == "100%"
    shots(page, "tasks")
    shots(page, "stats", "#stats")

    # delete one: it goes at once, with an undo toast (Undo keeps it; nothing was sent), then for good
    deletes = probe.count("DELETE", f"/api/v1/tasks/{stored['Call the plumber']['id']}")
    item(page, "Call the plumber").get_by_role("button", name="Delete").click()
    expect(page.locator("#toast-text")).to_have_text("Deleted “Call the plumber”.")
    expect(item(page, "Call the plumber")).to_have_count(0)
    expect(page.locator("#list-count")).to_have_text("1 task")
    page.locator("#toast-undo").click()
    expect(item(page, "Call the plumber").locator(".task-msg")).to_have_text("Not deleted.")
    assert probe.count("DELETE", f"/api/v1/tasks/{stored['Call the plumber']['id']}") == deletes
    delete_now(page, "Call the plumber")
    expect(item(page, "Call the plumber")).to_have_count(0)
    expect(page.locator("#list-count")).to_have_text("1 task")
    expect(page.locator("#stat-total")).to_have_text("2")

    # reload: still signed in (refresh cookie), the filters survive in the URL, one refresh call
    before = probe.count("POST", "/api/v1/auth/refresh")
    page.reload()
    expect(page.locator("#whoami")).to_have_text("Ann Example (ann@example.com)")
    expect(page.locator("#task-list .task-title")).to_have_text(["Buy oat milk"])
    expect(page.locator("#filter-sort")).to_have_value("-priority")
    assert probe.count("POST", "/api/v1/auth/refresh") == before + 1

    # sign out: the cookie is gone, so a reload shows the sign-in screen
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#auth-msg")).to_have_text("You have signed out.")
    expect(page.locator("#signin-heading")).to_be_visible()
    assert "#" not in page.url  # the next person does not inherit "?sort=-priority"
    page.reload()
    expect(page.locator("#signin-heading")).to_be_visible()
    expect(page.locator("#topbar")).to_be_hidden()
    sign_in(page, "ann@example.com")
    expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome back!")
    expect(page.locator("#filter-sort")).to_have_value("-created_at")
    expect(page.locator("#task-list .task-title")).to_have_text(["Buy oat milk"])
    assert probe.dialogs == []
    assert probe.errors == []


def test_validation_error_names_the_field_and_keeps_the_input(
    server: Server, page: Page, probe: PageProbe, shots: Callable[..., None]
) -> None:
    server.register("val@example.com", "Val")
    open_signed_in(page, server, "val@example.com")
    page.get_by_role("button", name="New task").click()
    title = page.get_by_label("Title", exact=True)
    # What the form can see itself is said before anything is sent, in words, and nothing typed is lost.
    title.fill("   ")
    page.locator("#task-description").fill("Keep this text")
    page.locator("#task-priority").select_option("high")
    page.locator("#task-due-time").fill("23:45")  # a time without a day
    page.locator("#task-tags").fill("alpha, beta")
    posts = probe.count("POST", "/api/v1/tasks")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-title-error")).to_have_text("Give the task a title.")
    expect(page.locator("#task-due_date-error")).to_have_text(
        "A time needs a date: pick the day too, or clear the time."
    )
    expect(page.locator("#task-form-msg")).to_have_text("Check the 2 highlighted fields.")
    expect(title).to_have_attribute("aria-invalid", "true")
    expect(title).to_be_focused()
    assert probe.count("POST", "/api/v1/tasks") == posts
    page.locator("#task-due").fill("2031-12-31")

    # A title over 200 characters is not cut: a counter says by how much, and the form refuses it.
    long_title = "x" * 250
    title.fill(long_title)
    expect(page.locator("#task-title-count")).to_have_text("250 / 200: 50 too many")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-title-error")).to_have_text("The title has 250 characters; shorten it to 200 or fewer.")
    expect(page.locator("#task-form-msg")).to_have_text("Check the highlighted field.")
    expect(title).to_have_value(long_title)
    expect(page.locator("#task-description")).to_have_value("Keep this text")
    expect(page.locator("#task-priority")).to_have_value("high")
    expect(page.locator("#task-due")).to_have_value("2031-12-31")
    expect(page.locator("#task-due-time")).to_have_value("23:45")
    expect(page.locator("#task-tags")).to_have_value("alpha, beta")
    assert probe.count("POST", "/api/v1/tasks") == posts
    shots(page, "edit-error")

    # What only the server knows comes back as a 422: each message in plain words under its field.
    title.fill("Tagged")
    expect(page.locator("#task-title-count")).to_have_text("6 / 200")
    page.locator("#task-tags").fill(", ".join(f"t{i}" for i in range(21)))
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-tags-error")).to_have_text("Use at most 20 tags (there are 21).")
    expect(page.locator("#task-form-msg")).to_have_text("Check the highlighted field.")
    expect(page.locator("#task-title-error")).to_be_hidden()
    expect(title).to_have_value("Tagged")
    long_tag = "y" * 51
    page.locator("#task-tags").fill(f"ok, {long_tag}")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-tags-error")).to_have_text(
        f"The tag “{long_tag}” is too long: a tag has at most 50 characters."
    )
    assert probe.count("POST", "/api/v1/tasks") == posts + 2

    # fixing it clears the messages and creates the task
    page.locator("#task-tags").fill("alpha")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-form-msg")).to_have_text("Created “Tagged”. Add another, or close the form.")
    expect(page.locator("#task-tags-error")).to_be_hidden()
    expect(title).to_have_value("")
    expect(page.locator("#task-title-count")).to_have_text("0 / 200")
    assert probe.errors == []


def test_user_text_is_rendered_as_text(server: Server, page: Page, probe: PageProbe) -> None:
    server.register("mallory@example.com", "<b>Mallory</b>")
    open_signed_in(page, server, "mallory@example.com")
    evil = "<img src=x onerror=alert(1)>"
    create_task(page, evil, description="<script>alert(2)</script>", tags="<i>x</i>")
    row = item(page, evil)
    expect(row.locator(".task-title")).to_have_text(evil)
    expect(row.locator(".task-desc")).to_have_text("<script>alert(2)</script>")
    expect(row.locator(".tag")).to_have_text("#<i>x</i>")
    expect(page.locator("#whoami")).to_have_text("<b>Mallory</b> (mallory@example.com)")
    assert page.locator("#task-list img, #task-list script, #task-list i, #topbar b").count() == 0
    # the undo toast shows it as text too
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#toast-text")).to_have_text(f"Deleted “{evil}”.")
    assert page.locator("#toast img").count() == 0
    page.locator("#toast-undo").click()
    expect(row).to_have_count(1)
    page.wait_for_timeout(200)
    assert probe.dialogs == []
    assert probe.errors == []


def test_one_refresh_for_concurrent_401s_and_other_tab_changes_show_up(
    server: Server, context: Any, page: Page, probe: PageProbe
) -> None:
    server.register("tabs@example.com", "Tabs")
    open_signed_in(page, server, "tabs@example.com")
    expect(page.locator("#empty-title")).to_have_text("No tasks yet")

    # The next list and stats calls (sent together) both answer 401 once, as with an expired token.
    failed: set[str] = set()

    def expire_once(route: Any) -> None:
        key = route.request.url.split("?")[0]
        if key not in failed:
            failed.add(key)
            route.fulfill(status=401, content_type="application/problem+json", body='{"status": 401}')
        else:
            route.continue_()

    page.route(re.compile(r".*/api/v1/tasks(/stats)?(\?.*)?$"), expire_once)
    before = probe.count("POST", "/api/v1/auth/refresh")

    # A second tab of the same profile signs in from the shared cookie and creates a task.
    other = context.new_page()
    other_probe = watch(other)
    other.goto(server.url + "/")
    expect(other.locator("#whoami")).to_have_text("Tabs (tabs@example.com)")
    create_task(other, "Made in the other tab")

    # Back in the first tab: becoming visible re-fetches; both 401s share one refresh, then retry.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(item(page, "Made in the other tab")).to_have_count(1)
    expect(page.locator("#stat-total")).to_have_text("1")
    assert failed == {server.url + "/api/v1/tasks", server.url + "/api/v1/tasks/stats"}
    assert probe.count("POST", "/api/v1/auth/refresh") == before + 1
    expect(page.locator("#signin-heading")).to_be_hidden()

    # Both tabs still hold a live session (no refresh-token reuse revoked the family).
    other.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(other.locator("#list-count")).to_have_text("1 task")
    page.reload()
    expect(page.locator("#whoami")).to_have_text("Tabs (tabs@example.com)")
    assert probe.errors == [] and other_probe.errors == []


def test_paging(server: Server, page: Page) -> None:
    server.register("pager@example.com", "Pager")
    token = server.token("pager@example.com")
    for i in range(27):  # a page is 25 tasks
        server.create_task(token, title=f"Task {i:02d}")
    open_signed_in(page, server, "pager@example.com")
    expect(page.locator("#page-info")).to_have_text("Page 1 of 2 · 27 tasks")
    expect(page.locator("#task-list > li")).to_have_count(25)
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#page-info")).to_have_text("Page 2 of 2 · 27 tasks")
    expect(page.locator("#task-list .task-title")).to_have_text(["Task 01", "Task 00"])
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    assert page.url.endswith("#/tasks?page=2")
    page.reload()
    expect(page.locator("#page-info")).to_have_text("Page 2 of 2 · 27 tasks")
    # deleting the last tasks of the last page moves to the page before, which is the only one:
    # no pager then
    for title in ("Task 01", "Task 00"):
        delete_now(page, title)
        expect(item(page, title)).to_have_count(0)
    expect(page.locator("#list-count")).to_have_text("25 tasks")
    expect(page.locator("#pager")).to_be_hidden()
    expect(page.locator("#task-list > li")).to_have_count(25)


def test_admin_deactivates_a_user(server: Server, page: Page, probe: PageProbe, shots: Callable[..., None]) -> None:
    bob = server.register("bob@example.com", "Bob Builder")
    bob_token = server.token("bob@example.com")
    for i in range(19):  # a full page of all tasks, to see how long the page gets on a phone
        server.create_task(
            bob_token,
            title=f"Chore {i:02d} with a rather long title to cut short",
            priority=("low", "medium", "high")[i % 3],
            due_date=f"2026-12-{i + 1:02d}T09:00:00Z" if i % 2 else None,
        )
    server.create_task(bob_token, title="Bob's secret plan", priority="high")

    # a plain user is kept off the admin page
    open_signed_in(page, server, "bob@example.com")
    page.goto(server.url + "/#/admin")
    expect(page.locator("#topbar-msg")).to_have_text("The admin page is only for administrators.")
    expect(page.locator("#tasks-heading")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#auth-msg")).to_have_text("You have signed out.")

    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page.locator("#nav-admin")).to_be_visible()
    page.get_by_role("link", name="Admin").click()
    expect(page.locator("#admin-heading")).to_be_visible()
    assert page.title() == "Administration · Taskhub"
    bob_row = page.locator(f"#users-body tr[data-id='{bob['id']}']")
    expect(bob_row.locator("td").nth(0)).to_have_text("Bob Builder")
    expect(bob_row.locator("td").nth(2)).to_have_text("User")
    expect(bob_row.locator("td").nth(3)).to_have_text("Active")
    me_row = page.locator("#users-body tr[data-email='admin@example.com']")
    expect(me_row.locator("td").nth(0)).to_have_text("Admin (you)")
    task_row = page.locator("#alltasks-body tr").filter(has_text="Bob's secret plan")
    expect(task_row.locator("td")).to_have_text(["Bob's secret plan", "bob@example.com", "To do", "High", "—"])
    expect(page.locator("#alltasks-body tr")).to_have_count(20)
    shots(page, "admin")
    # On a phone the 20 tasks are a dense list, not 20 tall cards (the page was ~6,200 px tall).
    page.set_viewport_size({"width": 360, "height": 800})
    rows = page.locator("#alltasks-body tr").evaluate_all("rs => rs.map(r => r.getBoundingClientRect().height)")
    assert max(rows) < 70, rows
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.set_viewport_size({"width": 1440, "height": 900})

    # search, then deactivate Bob
    page.get_by_label("Search by email or name").fill("bob")
    page.locator("#users-search").get_by_role("button", name="Search").click()
    expect(page.locator("#users-body tr")).to_have_count(1)
    # deactivating asks first (cancel, then confirm); activating again does not
    bob_row.get_by_role("button", name="Deactivate: bob@example.com").click()
    expect(page.locator("#confirm-title")).to_have_text("Deactivate this user?")
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    expect(bob_row.locator(".row-msg")).to_have_text("Not deactivated.")
    expect(bob_row.locator("td").nth(3)).to_have_text("Active")
    bob_row.get_by_role("button", name="Deactivate: bob@example.com").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Deactivate user").click()
    expect(bob_row.locator(".row-msg")).to_have_text("bob@example.com was deactivated; their sessions have ended.")
    expect(bob_row.locator("td").nth(3)).to_have_text("Deactivated")
    expect(bob_row.get_by_role("button", name="Activate: bob@example.com")).to_be_visible()

    # the last admin cannot deactivate themselves: the 409 is said in the row
    page.get_by_label("Search by email or name").fill("admin@")
    page.locator("#users-search").get_by_role("button", name="Search").click()
    me_row.get_by_role("button", name="Deactivate: admin@example.com").click()
    expect(page.locator("#confirm-title")).to_have_text("Deactivate your own account?")
    page.locator("#confirm-dialog").get_by_role("button", name="Deactivate user").click()
    expect(me_row.locator(".row-msg")).to_have_text(
        "Not changed: The last active admin cannot be demoted, deactivated or deleted."
    )

    # promote and demote Carol, then delete her (with a confirmation)
    carol = server.register("carol@example.com", "Carol")
    server.create_task(server.token("carol@example.com"), title="Carol's only task")
    page.get_by_label("Search by email or name").fill("carol")
    page.locator("#users-search").get_by_role("button", name="Search").click()
    carol_row = page.locator(f"#users-body tr[data-id='{carol['id']}']")
    carol_row.get_by_role("button", name="Make admin: carol@example.com").click()
    expect(carol_row.locator(".row-msg")).to_have_text("carol@example.com is now an admin.")
    expect(carol_row.locator("td").nth(2)).to_have_text("Admin")
    carol_row.get_by_role("button", name="Make user: carol@example.com").click()
    expect(carol_row.locator(".row-msg")).to_have_text("carol@example.com is now a user.")
    expect(carol_row.locator("td").nth(2)).to_have_text("User")
    carol_row.get_by_role("button", name="Delete: carol@example.com").click()
    expect(page.locator("#confirm-text")).to_have_text(
        "carol@example.com and all of their tasks will be deleted. This cannot be undone."
    )
    page.locator("#confirm-dialog").get_by_role("button", name="Delete user").click()
    expect(page.locator("#users-msg")).to_have_text("Deleted carol@example.com and their tasks.")
    expect(page.locator("#users-body tr")).to_have_text(["No user matches “carol”."])
    expect(page.locator("#alltasks-body tr").filter(has_text="Carol's only task")).to_have_count(0)

    # Bob can no longer sign in, and is told why
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "bob@example.com")
    expect(page.locator("#signin-msg")).to_have_text(
        "This account has been deactivated. Ask an administrator to reactivate it."
    )
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
        assert r.status_code == 403

    # activating again needs no confirmation
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    bob_row.get_by_role("button", name="Activate: bob@example.com").click()
    expect(bob_row.locator(".row-msg")).to_have_text("bob@example.com was activated.")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert probe.dialogs == []
    assert probe.errors == []


def test_keyboard_only(server: Server, page: Page, probe: PageProbe) -> None:
    """Sign in, open the form, create a task and close the form without a mouse; focus is visible."""
    server.register("keys@example.com", "Keys")
    page.goto(server.url + "/")
    expect(page.locator("#signin-email")).to_be_focused()
    page.keyboard.type("keys@example.com")
    page.keyboard.press("Tab")
    expect(page.locator("#signin-password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome back!")
    expect(page.locator("#tasks-heading")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#new-task")).to_be_focused()
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; })()"
    )
    assert style == ["solid", "3px"]
    page.keyboard.press("Enter")
    expect(page.get_by_label("Title", exact=True)).to_be_focused()
    page.keyboard.type("Typed with keys")
    page.keyboard.press("Enter")
    expect(page.locator("#task-form-msg")).to_have_text("Created “Typed with keys”. Add another, or close the form.")
    expect(item(page, "Typed with keys")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(page.locator("#editor")).to_be_hidden()
    expect(page.locator("#new-task")).to_be_focused()
    # the task's own controls are reachable in order: its checkbox, Edit, Delete
    page.locator("#filter-sort").focus()
    names = []
    for _ in range(6):
        page.keyboard.press("Tab")
        names.append(
            page.evaluate("document.activeElement.getAttribute('aria-label') || document.activeElement.textContent")
        )
    assert names[:5] == [
        "More filters",
        "Clear filters",
        "Mark done: Typed with keys",
        "Edit: Typed with keys",
        "Delete: Typed with keys",
    ]
    assert probe.errors == []


def test_a_draft_survives_an_ended_session(server: Server, page: Page, probe: PageProbe) -> None:
    server.register("draft@example.com", "Draft")
    open_signed_in(page, server, "draft@example.com")
    page.get_by_role("button", name="New task").click()
    page.get_by_label("Title", exact=True).fill("Unsaved idea")
    page.locator("#task-description").fill("Typed before the session ended")
    page.locator("#task-priority").select_option("high")

    # The access token is refused and the refresh cookie no longer works: the session has ended.
    def refuse(route: Any) -> None:
        route.fulfill(status=401, content_type="application/problem+json", body='{"status": 401}')

    page.route("**/api/v1/auth/refresh", refuse)
    page.route("**/api/v1/tasks", refuse)
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#auth-msg")).to_have_text("Your session has ended. Please sign in again.")
    expect(page.locator("#signin-email")).to_have_value("draft@example.com")
    page.unroute_all()

    page.locator("#signin-password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#task-form-msg")).to_have_text(
        "Your session had ended, so this was not saved yet. What you typed is kept: save again."
    )
    expect(page.get_by_label("Title", exact=True)).to_have_value("Unsaved idea")
    expect(page.locator("#task-description")).to_have_value("Typed before the session ended")
    expect(page.locator("#task-priority")).to_have_value("high")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-form-msg")).to_have_text("Created “Unsaved idea”. Add another, or close the form.")
    assert [t["title"] for t in server.tasks(server.token("draft@example.com"))["items"]] == ["Unsaved idea"]


def test_changes_made_elsewhere_are_reported_not_overwritten(server: Server, page: Page, probe: PageProbe) -> None:
    server.register("race@example.com", "Race")
    token = server.token("race@example.com")
    # This page must not hear of the changes made elsewhere (as when a proxy cuts the live stream):
    # every stream it opens ends at once, empty.
    page.route(
        re.compile(r".*/api/v1/events/stream$"),
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=""),
    )
    task = server.create_task(token, title="Shared task")
    gone = server.create_task(token, title="Soon gone")
    open_signed_in(page, server, "race@example.com")
    expect(page.locator("#list-count")).to_have_text("2 tasks")

    # another client changes the task behind this page's back (version 1 -> 2)
    item(page, "Shared task").get_by_role("button", name="Edit").click()
    with server.api() as c:
        r = c.patch(
            f"/api/v1/tasks/{task['id']}", json={"priority": "high"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200
        assert c.delete(f"/api/v1/tasks/{gone['id']}", headers={"Authorization": f"Bearer {token}"}).status_code == 204

    # the stale edit is refused (412) and what was typed stays
    page.get_by_label("Title", exact=True).fill("My stale rename")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#task-form-msg")).to_have_text(
        "Not saved: this task was changed elsewhere. Your text is kept. Choose “Discard changes” to load "
        "the latest version, or close the form and choose Edit again to apply your text to it."
    )
    expect(page.get_by_label("Title", exact=True)).to_have_value("My stale rename")
    expect(item(page, "Soon gone")).to_have_count(0)  # the list was refreshed meanwhile
    # "Discard changes" loads the version the other client saved
    page.get_by_role("button", name="Discard changes").click()
    expect(page.get_by_label("Title", exact=True)).to_have_value("Shared task")
    expect(page.locator("#task-priority")).to_have_value("high")
    page.get_by_role("button", name="Close").click()

    # deleting a task that is already gone says so
    with server.api() as c:
        r = c.post("/api/v1/tasks", json={"title": "Ghost"}, headers={"Authorization": f"Bearer {token}"})
        ghost = r.json()
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(item(page, "Ghost")).to_have_count(1)
    with server.api() as c:
        assert c.delete(f"/api/v1/tasks/{ghost['id']}", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    delete_now(page, "Ghost")
    expect(page.locator("#list-msg")).to_have_text(
        "Could not delete the task: it no longer exists (deleted elsewhere?). The list was refreshed."
    )
    expect(item(page, "Ghost")).to_have_count(0)
    stored = server.tasks(token)["items"]
    assert [(t["title"], t["priority"], t["version"]) for t in stored] == [("Shared task", "high", 2)]
    assert probe.errors == []


def test_escape_keeps_what_was_typed(server: Server, page: Page, probe: PageProbe) -> None:
    server.register("escape@example.com", "Escape")
    server.create_task(server.token("escape@example.com"), title="Existing task")
    open_signed_in(page, server, "escape@example.com")

    # Escape on an untouched form just closes it
    page.get_by_role("button", name="New task").click()
    page.keyboard.press("Escape")
    expect(page.locator("#editor")).to_be_hidden()
    expect(page.locator("#new-task")).to_have_text("New task")
    expect(page.locator("#list-msg")).to_be_empty()

    # Escape on a new task with text: kept as a draft, and reopening brings it back
    page.get_by_role("button", name="New task").click()
    page.get_by_label("Title", exact=True).fill("Half-typed idea")
    page.locator("#task-priority").select_option("high")
    page.keyboard.press("Escape")
    expect(page.locator("#editor")).to_be_hidden()
    expect(page.locator("#list-msg")).to_have_text(
        "What you typed is kept as a draft: choose “New task (draft)” to go on."
    )
    expect(page.locator("#new-task")).to_have_text("New task (draft)")
    page.locator("#new-task").click()
    expect(page.get_by_label("Title", exact=True)).to_have_value("Half-typed idea")
    expect(page.locator("#task-priority")).to_have_value("high")
    expect(page.locator("#task-form-msg")).to_have_text(
        "Your unsaved changes are back. Save them, or choose “Discard changes”."
    )

    # switching to another task's form keeps the new-task draft too; edits are kept per task
    item(page, "Existing task").get_by_role("button", name="Edit").click()
    expect(page.get_by_label("Title", exact=True)).to_have_value("Existing task")
    page.get_by_label("Title", exact=True).fill("Existing task, renamed")
    page.get_by_role("button", name="Close").click()
    expect(item(page, "Existing task").locator(".btn-edit")).to_have_text("Edit (draft)")
    item(page, "Existing task").get_by_role("button", name="Edit").click()
    expect(page.get_by_label("Title", exact=True)).to_have_value("Existing task, renamed")
    page.get_by_role("button", name="Discard changes").click()
    expect(page.get_by_label("Title", exact=True)).to_have_value("Existing task")
    expect(page.get_by_role("button", name="Discard changes")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(item(page, "Existing task").locator(".btn-edit")).to_have_text("Edit")

    page.locator("#new-task").click()
    expect(page.get_by_label("Title", exact=True)).to_have_value("Half-typed idea")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator("#task-form-msg")).to_have_text("Created “Half-typed idea”. Add another, or close the form.")
    page.keyboard.press("Escape")
    expect(page.locator("#new-task")).to_have_text("New task")
    assert probe.errors == []


def test_session_restore_waits_out_429_and_network_errors(
    server: Server, page: Page, probe: PageProbe, shots: Callable[..., None]
) -> None:
    """A reload that cannot refresh right now keeps the person signed in: it waits and tries again."""
    server.register("patient@example.com", "Patient")
    page.clock.install()
    open_signed_in(page, server, "patient@example.com")
    # the greeting goes away by itself
    page.clock.fast_forward(6000)
    expect(page.locator("#topbar-msg")).to_be_empty()

    # 429 with Retry-After: say so, keep the sign-in screen away, retry when the time is up
    answers = ["429"]

    def limited(route: Any) -> None:
        if answers and answers[0] == "429":
            answers.pop(0)
            route.fulfill(
                status=429,
                headers={"Retry-After": "30"},
                content_type="application/problem+json",
                body='{"status": 429, "title": "Too many requests"}',
            )
        else:
            route.continue_()

    page.route("**/api/v1/auth/refresh", limited)
    page.reload()
    expect(page.locator("#restore-msg")).to_have_text("Too many sign-in attempts from this network; retrying in 30 s.")
    expect(page.locator("#loading-text")).to_have_text("Restoring your session…")
    expect(page.locator("#signin-heading")).to_be_hidden()
    expect(page.locator("#restore-retry")).to_be_hidden()
    shots(page, "restoring")
    page.clock.fast_forward(10_000)
    expect(page.locator("#restore-msg")).to_have_text("Too many sign-in attempts from this network; retrying in 20 s.")
    page.clock.fast_forward(20_000)
    expect(page.locator("#whoami")).to_have_text("Patient (patient@example.com)")
    expect(page.locator("#topbar-msg")).to_be_empty()  # a restored session is not a new sign-in
    page.unroute_all()

    # the server cannot be reached: say so in those words and retry
    aborted: list[int] = []

    def unreachable(route: Any) -> None:
        if not aborted:
            aborted.append(1)
            route.abort("connectionrefused")
        else:
            route.continue_()

    probe.expect_failed_load(r"net::ERR_CONNECTION_REFUSED .*/api/v1/auth/refresh")
    page.route("**/api/v1/auth/refresh", unreachable)
    page.reload()
    expect(page.locator("#restore-msg")).to_have_text(
        re.compile(r"^Could not reach Taskhub\. Check your connection; retrying in \d s\.$")
    )
    expect(page.locator("#signin-heading")).to_be_hidden()
    page.clock.fast_forward(5000)
    expect(page.locator("#whoami")).to_have_text("Patient (patient@example.com)")
    page.unroute_all()

    # another error names the status, and offers to try again or to sign in
    failed: list[int] = []

    def broken(route: Any) -> None:
        if not failed:
            failed.append(1)
            route.fulfill(status=500, content_type="application/problem+json", body='{"status": 500}')
        else:
            route.continue_()

    probe.expect_failed_load(r"status of 500 .*/api/v1/auth/refresh")
    page.route("**/api/v1/auth/refresh", broken)
    page.reload()
    expect(page.locator("#restore-msg")).to_have_text(
        "Could not restore your session: Taskhub answered HTTP 500 (Internal Server Error). "
        "Try again, or sign in again."
    )
    expect(page.locator("#signin-heading")).to_be_hidden()
    page.get_by_role("button", name="Try again now").click()
    expect(page.locator("#whoami")).to_have_text("Patient (patient@example.com)")
    assert probe.errors == []
