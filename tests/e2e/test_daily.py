"""The daily flow of issue 12 in Chromium, in time zones far from UTC.

The person's zone is Pacific/Auckland (UTC+13 in summer, +12 in winter); where it matters the
browser is elsewhere (America/Los_Angeles), to show that "today" follows the *person's* zone. The
browser's clock is fixed with Playwright's ``page.clock.set_fixed_time`` (timers keep running); the
server's clock cannot be moved, so the fixed-clock tests only assert what the browser decides (the
day bounds it sends, the labels, the grouping) and what the server stores for a given input.
Screenshots (1440 and 390 px) go to ``test-output/screenshots/daily-*``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, PageProbe, Server, watch
from tests.e2e.test_dashboard import item, open_signed_in, sign_in

pytestmark = pytest.mark.e2e

NZ = "Pacific/Auckland"
LA = "America/Los_Angeles"
PHONE = 390
WIDTHS = (1440, PHONE)
HEADS = "#task-list > li.day-head"


def new_context(browser: Any, tz: str, width: int = 1440, **extra: Any) -> Any:
    ctx = browser.new_context(viewport={"width": width, "height": 900}, locale="en-US", timezone_id=tz, **extra)
    ctx.set_default_timeout(10_000)
    return ctx


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """This module's browser profile: en-US in Auckland (tests that need another zone make their own)."""
    ctx = new_context(browser, NZ)
    try:
        yield ctx
    finally:
        ctx.close()


def account(server: Server, email: str, tz: str = NZ, name: str = "Kiri") -> tuple[dict[str, Any], dict[str, str]]:
    """Register ``email`` with time zone ``tz`` through the API; returns the user and an auth header."""
    with server.api() as c:
        r = c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": name, "time_zone": tz})
        assert r.status_code == 201, r.text
        user: dict[str, Any] = r.json()
    assert user["time_zone"] == tz
    return user, {"Authorization": f"Bearer {server.token(email)}"}


def add(server: Server, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    with server.api() as c:
        r = c.post("/api/v1/tasks", json=fields, headers=auth)
        assert r.status_code == 201, r.text
        task: dict[str, Any] = r.json()
        return task


def tasks(server: Server, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    with server.api() as c:
        r = c.get("/api/v1/tasks", params={"limit": 100}, headers=auth)
        assert r.status_code == 200, r.text
        return {t["title"]: t for t in r.json()["items"]}


def fixed(page: Page, iso: str) -> None:
    """The browser's clock reads ``iso`` from now on (Date.now, new Date); timers keep running."""
    page.clock.set_fixed_time(datetime.fromisoformat(iso.replace("Z", "+00:00")))


def titles(page: Page) -> list[str]:
    found: list[str] = page.locator("#task-list > li.task .task-title").all_inner_texts()
    return found


def no_sideways_scroll(page: Page) -> None:
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width


# ---- quick add, views, tags (the real clock: /tasks/parse reads "tomorrow" on the server's clock) ---------


def test_quick_add_views_and_tags_in_the_persons_zone(
    server: Server, page: Page, probe: PageProbe, shots: Callable[..., None]
) -> None:
    # Sign up in a browser in Auckland: the account gets the browser's zone.
    page.goto(server.url + "/")
    page.get_by_role("button", name="Create an account").click()
    page.locator("#signup-name").fill("Kiri Quick")
    page.locator("#signup-email").fill("quick@example.com")
    page.locator("#signup-password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    sign_in(page, "quick@example.com")
    expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome to Taskhub, Kiri Quick!")
    auth = {"Authorization": f"Bearer {server.token('quick@example.com')}"}
    with server.api() as c:
        assert c.get("/api/v1/users/me", headers=auth).json()["time_zone"] == NZ

    now = datetime.now(ZoneInfo(NZ))
    today = now.date()
    tomorrow_5pm = datetime.combine(today + timedelta(days=1), datetime.min.time(), ZoneInfo(NZ)).replace(hour=17)

    # The line is read by the server; the parts show as chips before anything is saved.
    page.keyboard.press("q")
    expect(page.locator("#quick-text")).to_be_focused()
    page.locator("#quick-text").fill("Call Ann tomorrow 5pm !high #family")
    chips = page.locator("#quick-chips .chip-label")
    expect(chips).to_have_text(["Tomorrow 5:00 PM", "High priority", "#family"])
    expect(page.locator("#quick-title")).to_have_text("Title: Call Ann")
    assert probe.count("POST", "/api/v1/tasks") == 0  # parsing wrote nothing
    shots(page, "daily-quick-add", "#quick-add", widths=WIDTHS)
    page.keyboard.press("Enter")
    expect(page.locator("#quick-msg")).to_have_text("Added “Call Ann” · Tomorrow 5:00 PM.")
    expect(page.locator("#quick-text")).to_have_value("")
    call = tasks(server, auth)["Call Ann"]
    assert call["due_date"] == tomorrow_5pm.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (call["priority"], call["tags"], call["all_day"]) == ("high", ["family"], False)

    # A removed chip keeps its words in the title: "#home" stays text, the task has no tag.
    page.locator("#quick-text").fill("Water plants today #home")
    expect(chips).to_have_text(["Today", "#home"])
    page.get_by_role("button", name="Remove #home (keep “#home” in the title)").click()
    expect(chips).to_have_text(["Today"])
    expect(page.locator("#quick-title")).to_have_text("Title: Water plants #home")
    page.locator("#quick-save").click()
    expect(page.locator("#quick-msg")).to_have_text("Added “Water plants #home” · Today.")
    water = tasks(server, auth)["Water plants #home"]
    assert (water["all_day"], water["due_on"], water["tags"]) == (True, today.isoformat(), [])
    add(server, auth, title="Someday maybe")
    expect(page.locator("#list-count")).to_have_text("3 tasks")
    expect(item(page, "Water plants #home").locator(".due")).to_have_text("Today")
    expect(item(page, "Call Ann").locator(".due")).to_have_text("Tomorrow 5:00 PM")
    expect(page.locator("#stat-total")).to_have_text("3")  # the live stream brought the API's task
    page.evaluate("document.getElementById('topbar-msg').textContent = ''")  # the greeting, for the picture
    page.locator("#tasks-heading").focus()
    shots(page, "daily-inbox", widths=WIDTHS)

    # Today: due today (in Auckland) or overdue; Upcoming: the next 7 days, by day.
    page.get_by_role("link", name="Today", exact=True).click()
    expect(page.locator("#tasks-heading")).to_have_text("Today")
    assert page.url.endswith("#/tasks?view=today")
    expect(page.locator("#task-list .task-title")).to_have_text(["Water plants #home"])
    page.get_by_role("link", name="Upcoming").click()
    expect(page.locator("#task-list .task-title")).to_have_text(["Water plants #home", "Call Ann"])
    expect(page.locator(HEADS)).to_have_text([re.compile(r"^Today · "), re.compile(r"^Tomorrow · ")])
    shots(page, "daily-upcoming", widths=WIDTHS)

    # A tag filters the list (the view stays); the filter is in the URL.
    page.get_by_role("link", name="Inbox").click()
    item(page, "Call Ann").get_by_role("button", name="Show tasks tagged family").click()
    expect(page.locator("#task-list .task-title")).to_have_text(["Call Ann"])
    assert page.url.endswith("#/tasks?tag=family")
    expect(page.locator("#filter-tag")).to_have_value("family")
    page.get_by_role("button", name="Clear filters").click()
    expect(page.locator("#list-count")).to_have_text("3 tasks")

    # Completing from Today: the row leaves; Completed shows it with its completion time.
    page.get_by_role("link", name="Today", exact=True).click()
    expect(page.locator("#task-list .task-title")).to_have_text(["Water plants #home"])
    # click, not check(): the row leaves the view at once, so its box is never seen checked
    item(page, "Water plants #home").locator(".task-check").click()
    expect(page.locator("#toast-text")).to_have_text("Completed “Water plants #home”.")
    expect(page.locator("#empty-title")).to_have_text("Nothing due today")
    page.get_by_role("link", name="Completed").click()
    done = item(page, "Water plants #home")
    expect(done.locator(".completed-at")).to_have_text(re.compile(r"^Completed Today \d{1,2}:\d{2} [AP]M$"))
    expect(done.locator(".task-check")).to_be_checked()
    shots(page, "daily-completed", widths=WIDTHS)

    # Overdue: red, first in Today under its own heading, and the "Overdue only" control.
    add(server, auth, title="Old bill", due_date="2020-01-01")
    page.get_by_role("link", name="Inbox").click()
    bill = item(page, "Old bill")
    expect(bill.locator(".due")).to_have_text("Overdue: Jan 1, 2020")
    expect(bill.locator(".due")).to_have_class("due due-overdue")
    page.locator("#more-filters").evaluate("d => { d.open = true; }")
    page.get_by_label("Overdue only").check()
    expect(page.locator("#task-list .task-title")).to_have_text(["Old bill"])
    assert page.url.endswith("#/tasks?overdue=true")
    page.get_by_role("link", name="Today", exact=True).click()
    expect(page.locator(HEADS)).to_have_text(["Overdue"])
    expect(page.locator("#task-list .task-title")).to_have_text(["Old bill"])
    assert probe.errors == []


# ---- "today" is the person's day, with the browser's clock fixed ------------------------------------------


def test_today_is_the_persons_day_not_utcs_nor_the_browsers(server: Server, browser: Any) -> None:
    """At 2027-03-10 22:30 UTC it is already Thursday March 11 in Auckland (and still the 10th in UTC
    and in Los Angeles, where the browser is): an all-day task due on the 11th is due *today*."""
    _, auth = account(server, "zone@example.com")
    add(server, auth, title="Dentist", due_date="2027-03-11")  # all day, in the owner's zone
    add(server, auth, title="Dinner", due_date="2027-03-12")
    ctx = new_context(browser, LA)
    page = ctx.new_page()
    probe = watch(page)
    try:
        fixed(page, "2027-03-10T22:30:00Z")
        open_signed_in(page, server, "zone@example.com")
        page.goto(server.url + "/#/tasks?view=today")
        expect(page.locator("#task-list .task-title")).to_have_text(["Dentist"])
        expect(page.locator(HEADS)).to_have_text(["Today · Thursday, March 11, 2027"])
        expect(item(page, "Dentist").locator(".due")).to_have_text("Today")
        # the bound sent is Auckland's next midnight (March 12, 00:00 +13:00)
        assert probe.count("GET", "/api/v1/tasks") >= 1
        page.goto(server.url + "/#/tasks?view=upcoming")
        expect(page.locator("#task-list .task-title")).to_have_text(["Dentist", "Dinner"])
        expect(item(page, "Dinner").locator(".due")).to_have_text("Tomorrow")
        # a due range is days in the person's zone: from March 12 leaves Dinner only
        page.locator("#more-filters summary").click()
        with page.expect_request(lambda r: "/api/v1/tasks?" in r.url and "due_from" not in r.url) as sent:
            page.locator("#filter-due-from").fill("2027-03-12")
        assert "due_after=2027-03-11T10%3A59%3A59.999999Z" in sent.value.url  # Auckland's midnight - 1 µs
        expect(page.locator("#task-list .task-title")).to_have_text(["Dinner"])
        assert page.url.endswith("#/tasks?view=upcoming&due_from=2027-03-12")

        # The evening before, in Auckland (10:30 UTC on the 10th): not due today yet.
        fixed(page, "2027-03-10T10:30:00Z")
        page.reload()
        page.goto(server.url + "/#/tasks?view=today")
        expect(page.locator("#empty-title")).to_have_text("Nothing due today")
        page.goto(server.url + "/#/tasks?view=upcoming")
        expect(page.locator(HEADS)).to_have_text(
            ["Tomorrow · Thursday, March 11, 2027", "Fri · Friday, March 12, 2027"]
        )

        # Moving the account to Los Angeles moves "today" with it (the all-day day stays the 11th).
        fixed(page, "2027-03-10T22:30:00Z")
        page.goto(server.url + "/#/account")
        page.locator("#account-zone").select_option(LA)
        page.locator("#profile-form").get_by_role("button", name="Save").click()
        expect(page.locator("#profile-msg")).to_have_text(f"Saved. Dates now use {LA}.")
        page.goto(server.url + "/#/tasks?view=today")
        expect(page.locator("#empty-title")).to_have_text("Nothing due today")
        page.goto(server.url + "/#/tasks?view=upcoming")
        expect(item(page, "Dentist").locator(".due")).to_have_text("Tomorrow")
        assert probe.errors == []
    finally:
        ctx.close()


def test_a_week_across_the_dst_change(server: Server, page: Page, probe: PageProbe) -> None:
    """Auckland leaves summer time on Sunday 2027-04-04 at 03:00 (+13:00 -> +12:00). The form turns
    local times into instants with the offset of *that* day, and Upcoming's bounds and groups follow."""
    _, auth = account(server, "dst@example.com")
    fixed(page, "2027-04-02T23:00:00Z")  # Saturday April 3, 12:00 in Auckland (+13:00)
    open_signed_in(page, server, "dst@example.com")

    def create(title: str, day: str, time: str = "") -> None:
        page.get_by_role("button", name="New task").click()
        page.get_by_label("Title", exact=True).fill(title)
        page.locator("#task-due").fill(day)
        if time:
            page.locator("#task-due-time").fill(time)
        page.get_by_role("button", name="Create task").click()
        expect(page.locator("#task-form-msg")).to_have_text(f"Created “{title}”. Add another, or close the form.")

    create("Before the change", "2027-04-03", "09:00")
    create("Change day", "2027-04-04")
    create("After the change", "2027-04-05", "09:00")
    create("Last evening", "2027-04-09", "23:30")
    create("Too late", "2027-04-10", "00:30")
    page.keyboard.press("Escape")
    stored = tasks(server, auth)
    assert stored["Before the change"]["due_date"] == "2027-04-02T20:00:00Z"  # +13:00
    assert stored["After the change"]["due_date"] == "2027-04-04T21:00:00Z"  # +12:00
    assert stored["Last evening"]["due_date"] == "2027-04-09T11:30:00Z"
    assert (stored["Change day"]["all_day"], stored["Change day"]["due_on"]) == (True, "2027-04-04")

    page.get_by_role("link", name="Upcoming").click()
    expect(page.locator("#task-list .task-title")).to_have_text(
        ["Before the change", "Change day", "After the change", "Last evening"]
    )
    expect(page.locator(HEADS)).to_have_text(
        [
            "Today · Saturday, April 3, 2027",
            "Tomorrow · Sunday, April 4, 2027",
            "Mon · Monday, April 5, 2027",
            "Fri · Friday, April 9, 2027",
        ]
    )
    expect(item(page, "Before the change").locator(".due")).to_have_text("Overdue: Today 9:00 AM")
    expect(item(page, "Before the change").locator(".due")).to_have_class("due due-overdue")
    expect(item(page, "After the change").locator(".due")).to_have_text("Mon 9:00 AM")
    # the form shows the stored instant as the same local day and time
    item(page, "After the change").get_by_role("button", name="Edit").click()
    expect(page.locator("#task-due")).to_have_value("2027-04-05")
    expect(page.locator("#task-due-time")).to_have_value("09:00")
    assert probe.errors == []


# ---- undo and shortcuts -----------------------------------------------------------------------------------


def test_undo_and_keyboard_shortcuts(server: Server, page: Page, probe: PageProbe, shots: Callable[..., None]) -> None:
    _, auth = account(server, "keys2@example.com")
    ids = {t: add(server, auth, title=t)["id"] for t in ("Alpha", "Bravo", "Charlie")}
    open_signed_in(page, server, "keys2@example.com")
    expect(page.locator("#task-list .task-title")).to_have_text(["Charlie", "Bravo", "Alpha"])
    row = page.locator("#task-list > li.task")

    page.keyboard.press("j")
    expect(row.nth(0)).to_be_focused()
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(row.nth(2)).to_be_focused()
    page.keyboard.press("k")
    expect(row.nth(1)).to_be_focused()

    # x completes the current task (it leaves the Inbox), z undoes it
    page.keyboard.press("x")
    expect(page.locator("#toast-text")).to_have_text("Completed “Bravo”.")
    expect(page.locator("#task-list .task-title")).to_have_text(["Charlie", "Alpha"])
    assert tasks(server, auth)["Bravo"]["status"] == "done"
    page.keyboard.press("z")
    expect(page.locator("#task-list .task-title")).to_have_text(["Charlie", "Bravo", "Alpha"])
    expect(page.locator("#toast")).to_be_hidden()
    assert tasks(server, auth)["Bravo"]["status"] == "todo"

    # # deletes (the row goes, nothing is sent yet); z brings it back
    item(page, "Alpha").focus()
    page.keyboard.press("#")
    expect(page.locator("#toast-text")).to_have_text("Deleted “Alpha”.")
    expect(page.locator("#task-list .task-title")).to_have_text(["Charlie", "Bravo"])
    page.keyboard.press("z")
    expect(page.locator("#task-list .task-title")).to_have_text(["Charlie", "Bravo", "Alpha"])
    assert probe.count("DELETE", f"/api/v1/tasks/{ids['Alpha']}") == 0

    # e edits the current task; Escape closes the form
    item(page, "Charlie").focus()
    page.keyboard.press("e")
    expect(page.get_by_label("Title", exact=True)).to_have_value("Charlie")
    page.keyboard.press("Escape")
    expect(page.locator("#editor")).to_be_hidden()

    # q and / move to their fields without typing the letter; ? lists the keys
    page.locator("#tasks-heading").focus()
    page.keyboard.press("/")
    expect(page.locator("#filter-q")).to_be_focused()
    expect(page.locator("#filter-q")).to_have_value("")
    page.keyboard.type("k")  # in a field a letter is text, not a shortcut
    expect(page.locator("#filter-q")).to_have_value("k")
    page.locator("#filter-q").fill("")
    page.locator("#tasks-heading").focus()
    page.keyboard.press("q")
    expect(page.locator("#quick-text")).to_be_focused()
    expect(page.locator("#quick-text")).to_have_value("")
    page.keyboard.type("j k x")  # typed into the field, not shortcuts
    expect(page.locator("#quick-text")).to_have_value("j k x")
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    expect(page.locator("#help-dialog")).to_be_visible()
    expect(page.locator("#help-dialog dt")).to_have_count(9)
    shots(page, "daily-help", "#help-dialog", widths=(1440,))
    page.keyboard.press("Escape")
    expect(page.locator("#help-dialog")).to_be_hidden()

    # A delete still waiting for its toast is sent when the page is left (keepalive).
    item(page, "Alpha").get_by_role("button", name="Delete").click()
    expect(page.locator("#toast-text")).to_have_text("Deleted “Alpha”.")
    page.reload()
    expect(page.locator("#task-list .task-title")).to_have_text(["Charlie", "Bravo"])
    assert sorted(tasks(server, auth)) == ["Bravo", "Charlie"]
    assert probe.errors == []


# ---- phone, dark mode, long text, no layout shift ---------------------------------------------------------


def test_phone_rows_dark_mode_and_long_text(server: Server, browser: Any, shots: Callable[..., None]) -> None:
    _, auth = account(server, "phone@example.com", name="P" * 60)
    long_word = "Supercalifragilisticexpialidocious" * 5  # 170 characters, no space
    add(server, auth, title=long_word, tags=["t" * 50], description="d" * 300)
    for i in range(11):
        add(
            server,
            auth,
            title=f"Errand {i:02d}",
            due_date=f"2031-01-{i + 1:02d}",
            priority=("low", "medium", "high")[i % 3],
        )
    ctx = new_context(browser, NZ, width=PHONE, color_scheme="dark", is_mobile=True, has_touch=True)
    page = ctx.new_page()
    probe = watch(page)
    try:
        open_signed_in(page, server, "phone@example.com")
        expect(page.locator("#list-count")).to_have_text("12 tasks")
        # the greeting floats over the page: the list does not move when it goes
        top = page.locator("#tasks-heading").bounding_box()["y"]
        page.evaluate("document.getElementById('topbar-msg').textContent = ''")
        assert page.locator("#tasks-heading").bounding_box()["y"] == top

        # dark mode from the system preference
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(18, 22, 29)"
        expect(page.get_by_role("button", name="Dark mode")).to_have_attribute("aria-pressed", "true")

        # one line per task (about 12 tasks per screen), nothing scrolls sideways
        heights = page.locator("#task-list > li.task").evaluate_all(
            "rs => rs.map(r => r.getBoundingClientRect().height)"
        )
        assert max(heights) < 50, heights
        no_sideways_scroll(page)
        first = item(page, long_word)
        expect(first.locator(".task-actions")).to_be_hidden()
        first.get_by_role("button", name=f"More actions: {long_word}").click()
        expect(first.get_by_role("button", name="Edit")).to_be_visible()
        expect(first.locator(".tag")).to_be_visible()
        no_sideways_scroll(page)
        shots(page, "daily-phone-dark", widths=(PHONE,))
        first.get_by_role("button", name="Edit").click()
        expect(page.get_by_label("Title", exact=True)).to_have_value(long_word)
        no_sideways_scroll(page)
        page.keyboard.press("Escape")

        # the toggle picks light and keeps it across a reload, though the system is dark
        page.get_by_role("button", name="Dark mode").click()
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        page.reload()
        expect(page.locator("#list-count")).to_have_text("12 tasks")
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(244, 246, 250)"
        expect(page.get_by_role("button", name="Dark mode")).to_have_attribute("aria-pressed", "false")
        shots(page, "daily-phone-light", widths=(PHONE,))
        page.get_by_role("button", name="Dark mode").click()
        page.set_viewport_size({"width": 1440, "height": 900})
        page.wait_for_timeout(50)
        page.screenshot(path=str(_shot("daily-dark-1440")), full_page=True, animations="disabled")
        assert probe.errors == []
    finally:
        ctx.close()


def _shot(name: str) -> Any:
    from tests.e2e.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


# ---- the account page -------------------------------------------------------------------------------------


def test_account_changes_take_effect(server: Server, page: Page, probe: PageProbe, shots: Callable[..., None]) -> None:
    account(server, "me@example.com", name="Mere")
    open_signed_in(page, server, "me@example.com")
    page.get_by_role("link", name="Account").click()
    expect(page.locator("#account-heading")).to_be_focused()
    expect(page.locator("#account-zone")).to_have_value(NZ)
    shots(page, "daily-account", widths=WIDTHS)

    # name
    page.locator("#account-name").fill("Mere Rua")
    page.locator("#profile-form").get_by_role("button", name="Save").click()
    expect(page.locator("#profile-msg")).to_have_text("Saved.")
    expect(page.locator("#whoami")).to_have_text("Mere Rua (me@example.com)")

    # email: a wrong current password is said next to the field and does not end the session
    page.locator("#account-email").fill("mere@example.com")
    page.locator("#account-email-password").fill("not my password")
    page.get_by_role("button", name="Change email").click()
    expect(page.locator("#email-current_password-error")).to_have_text("That is not your current password.")
    expect(page.locator("#email-msg")).to_have_text("Not changed: the current password is not right.")
    expect(page.locator("#account-email-password")).to_be_focused()
    expect(page.locator("#account-heading")).to_be_visible()
    page.locator("#account-email-password").fill(PASSWORD)
    page.get_by_role("button", name="Change email").click()
    expect(page.locator("#email-msg")).to_have_text("Your email is now mere@example.com. Sign in with it from now on.")
    expect(page.locator("#whoami")).to_have_text("Mere Rua (mere@example.com)")

    # password: too short is refused by the form; a good one keeps this tab signed in
    page.locator("#account-password-current").fill(PASSWORD)
    page.locator("#account-password-new").fill("short")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#pw-new_password-error")).to_have_text("Use at least 8 characters.")
    new_password = "a brand new passphrase 42"
    page.locator("#account-password-new").fill(new_password)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-msg")).to_have_text(
        "Password changed. Other devices have to sign in again with the new password."
    )
    page.get_by_role("link", name="Tasks").click()
    expect(page.locator("#empty-title")).to_have_text("No tasks yet")  # still signed in: the list loaded

    # the old password is refused, the new one works
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "mere@example.com", PASSWORD)
    expect(page.locator("#signin-msg")).to_have_text("The email or password is incorrect.")
    sign_in(page, "mere@example.com", new_password)
    expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome back!")

    # sign out everywhere: this tab and every other session end; the password still works
    elsewhere = {"Authorization": f"Bearer {server.token('mere@example.com', new_password)}"}
    page.get_by_role("link", name="Account").click()
    page.get_by_role("button", name="Sign out everywhere").click()
    expect(page.locator("#auth-msg")).to_have_text("You were signed out on every device, this one included.")
    expect(page.locator("#signin-email")).to_have_value("mere@example.com")
    with server.api() as c:
        assert c.get("/api/v1/users/me", headers=elsewhere).status_code == 401
    page.reload()
    expect(page.locator("#signin-heading")).to_be_visible()  # the refresh cookie is gone too
    sign_in(page, "mere@example.com", new_password)
    expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome back!")

    # delete the account: the typed confirmation must match
    page.get_by_role("link", name="Account").click()
    page.locator("#account-delete-confirm").fill("mere@example.org")
    page.locator("#account-delete-password").fill(new_password)
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator("#del-confirm-error")).to_have_text("Type mere@example.com exactly to confirm.")
    page.locator("#account-delete-confirm").fill("mere@example.com")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator("#auth-msg")).to_have_text("The account mere@example.com and all of its tasks were deleted.")
    expect(page.locator("#signin-heading")).to_be_visible()
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/api/v1/auth/login", json={"email": "mere@example.com", "password": new_password})
        assert r.status_code == 401
    assert probe.errors == []


def test_a_utc_account_is_offered_the_devices_zone(server: Server, page: Page, probe: PageProbe) -> None:
    """Accounts from before time zones (or made through the API without one) are in UTC."""
    server.register("old@example.com", "Old Account")  # no time_zone: UTC
    open_signed_in(page, server, "old@example.com")
    offer = page.locator("#zone-offer")
    expect(offer).to_contain_text(f"Dates use UTC, your account's time zone; this device is in {NZ}.")
    page.get_by_role("button", name=f"Use {NZ}").click()
    expect(page.locator("#topbar-msg")).to_have_text(f"Dates now use {NZ}.")
    expect(offer).to_be_hidden()
    with server.api() as c:
        me = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {server.token('old@example.com')}"})
        assert me.json()["time_zone"] == NZ
    page.reload()
    expect(page.locator("#list-count")).to_have_text("0 tasks")
    expect(offer).to_be_hidden()
    assert probe.errors == []
