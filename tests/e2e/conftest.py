"""Fixtures of the browser tests: a real ``taskhub serve`` process per module and Debian's Chromium.

Chromium comes from the system (``apt-get install chromium``; Playwright's own download is not used).
When it is missing the tests are skipped locally, but fail under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import TASKHUB, serve, taskhub_env

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
JWT_SECRET = "e2e-secret-" + "k" * 48
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin passphrase for e2e"
PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = (1440, 360)


def _chromium() -> str | None:
    for candidate in (os.environ.get("TASKHUB_E2E_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class Server:
    """A running ``taskhub serve``: its base URL and a small sync API client for test setup."""

    url: str
    log: Path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def register(self, email: str, name: str, password: str = PASSWORD) -> dict[str, Any]:
        with self.api() as c:
            r = c.post("/api/v1/auth/register", json={"email": email, "password": password, "name": name})
            assert r.status_code == 201, r.text
            body: dict[str, Any] = r.json()
            return body

    def token(self, email: str, password: str = PASSWORD) -> str:
        with self.api() as c:
            r = c.post("/api/v1/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
            token: str = r.json()["access_token"]
            return token

    def create_task(self, token: str, **fields: Any) -> dict[str, Any]:
        with self.api() as c:
            r = c.post("/api/v1/tasks", json=fields, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, r.text
            body: dict[str, Any] = r.json()
            return body

    def tasks(self, token: str, **params: Any) -> dict[str, Any]:
        with self.api() as c:
            r = c.get("/api/v1/tasks", params=params, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = _chromium()
    if path is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server process on a free port with its own SQLite data dir, plus the first admin."""
    data = tmp_path_factory.mktemp("e2e-data")
    env = {
        "TASKHUB_JWT_SECRET": JWT_SECRET,
        "TASKHUB_RATE_LIMIT_ENABLED": "false",
        "TASKHUB_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    made = subprocess.run(
        [TASKHUB, "create-admin", "--email", ADMIN_EMAIL, "--name", "Admin"],
        env=taskhub_env(data, **env),
        cwd=data,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr + made.stdout
    with serve(data, env) as running:
        yield Server(url=running.url, log=running.log)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# Chromium logs every non-2xx answer to fetch() as a console error ("Failed to load resource: the
# server responded with a status of 401 (Unauthorized)"); no script can prevent that. The 4xx answers
# of the API are part of normal use (401 from /auth/refresh on every signed-out load, 422, 409, 412,
# 404, 403, 429) and the dashboard handles each of them, so they are expected. A 5xx or a network
# failure is not: a test that provokes one must say so with ``probe.expect_failed_load(pattern)``.
EXPECTED_FAILED_LOADS = (re.compile(r"status of 4\d\d .*\[.*/api/v1/"),)


@dataclass
class PageProbe:
    """What the page did that a test may want to assert on: dialogs, console errors, requests."""

    dialogs: list[str]
    errors: list[str]
    requests: list[str]
    failed_loads: list[str] = field(default_factory=list)  # "<console text> [<url>]"
    expected: list[re.Pattern[str]] = field(default_factory=lambda: list(EXPECTED_FAILED_LOADS))

    def expect_failed_load(self, pattern: str) -> None:
        """Accept a failed load (e.g. a 500 the test fakes) whose "<text> [<url>]" matches ``pattern``."""
        self.expected.append(re.compile(pattern))

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r == f"{method} {path}")


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (own cookies) in a fixed locale and time zone."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="Europe/Berlin")
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        ctx.close()


def watch(page: Any) -> PageProbe:
    """Record dialogs (and dismiss them), console errors, uncaught exceptions and API requests."""
    probe = PageProbe(dialogs=[], errors=[], requests=[])

    def on_dialog(dialog: Any) -> None:
        probe.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        if msg.text.startswith("Failed to load resource"):
            line = f"{msg.text} [{(msg.location or {}).get('url', '')}]"
            probe.failed_loads.append(line)
            if not any(p.search(line) for p in probe.expected):
                probe.errors.append(line)
            return
        probe.errors.append(msg.text)

    def on_request(req: Any) -> None:
        path = req.url.split("://", 1)[-1]
        path = "/" + path.split("/", 1)[1] if "/" in path else "/"
        probe.requests.append(f"{req.method} {path.split('?', 1)[0]}")

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: probe.errors.append(f"pageerror: {exc}"))
    page.on("request", on_request)
    return probe


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


@pytest.fixture
def probe(page: Any) -> PageProbe:
    return watch(page)


@pytest.fixture(scope="session")
def shots() -> Callable[..., None]:
    """``shots(page, "name")``: save ``name-1440.png`` and ``name-360.png`` (full page, or one element);
    ``widths`` picks other widths (the daily-flow tests use 1440 and 390, an iPhone's width)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str, selector: str | None = None, widths: tuple[int, ...] = WIDTHS) -> None:
        original = page.viewport_size
        try:
            for width in widths:
                page.set_viewport_size({"width": width, "height": 900})
                page.wait_for_timeout(50)
                path = SCREENSHOTS / f"{name}-{width}.png"
                if selector:
                    page.locator(selector).screenshot(path=str(path), animations="disabled")
                else:
                    page.screenshot(path=str(path), full_page=True, animations="disabled")
        finally:
            page.set_viewport_size(original)

    return take
