"""The dashboard in Chromium loading its hashed files: from the app itself, and from a "CDN" (another
origin serving what ``taskhub export-static`` wrote, as S3/CloudFront would) under the page's CSP."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import JWT_SECRET, Server, watch
from tests.e2e.test_dashboard import sign_in
from tests.servers import serve
from tests.test_cli import run

pytestmark = pytest.mark.e2e

PREFIX = "/taskhub"


@dataclass
class Cdn:
    """A static file server on its own port: ``<url>/<hashed path>`` -> ``directory/<hashed path>``."""

    url: str
    directory: Path
    served: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdn]:
    directory = tmp_path_factory.mktemp("cdn")
    made = run(["export-static", str(directory)], directory)
    assert made.returncode == 0, made.stderr
    served: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            served.append(path)
            if not path.startswith(PREFIX + "/"):
                return str(directory / "no-such-file")
            return super().translate_path(path[len(PREFIX) :])

        def end_headers(self) -> None:
            # What a CloudFront response headers policy adds: module scripts load in CORS mode.
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    def handler(*args: Any, **kwargs: Any) -> Handler:
        return Handler(*args, directory=str(directory), **kwargs)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Cdn(f"http://127.0.0.1:{httpd.server_address[1]}{PREFIX}", directory, served)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def cdn_server(tmp_path_factory: pytest.TempPathFactory, cdn: Cdn) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("cdn-app")
    env = {"TASKHUB_JWT_SECRET": JWT_SECRET, "TASKHUB_RATE_LIMIT_ENABLED": "false", "TASKHUB_ASSET_BASE_URL": cdn.url}
    with serve(data, env) as running:
        yield Server(url=running.url, log=running.log)


def test_the_dashboard_runs_from_the_cdn_under_its_csp(browser: Any, cdn: Cdn, cdn_server: Server) -> None:
    cdn_server.register("cdn@example.com", "Cee")
    manifest: dict[str, str] = json.loads((cdn.directory / "manifest.json").read_text())
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    try:
        page = context.new_page()
        probe = watch(page)
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        cdn.served.clear()
        page.goto(cdn_server.url + "/")
        expect(page.locator("#signin-heading")).to_be_visible()
        sign_in(page, "cdn@example.com")
        expect(page.locator("#topbar-msg")).to_have_text("Signed in. Welcome back!")
        expect(page.locator("#tasks-heading")).to_be_visible()
        assert probe.errors == []  # a CSP violation or a module that did not load shows up here

        from_app = [u.removeprefix(cdn_server.url) for u in urls if u.startswith(cdn_server.url)]
        assert all(u == "/" or u.startswith("/api/v1/") for u in from_app), from_app
        from_cdn = {u.removeprefix(cdn.url + "/") for u in urls if u.startswith(cdn.url + "/")}
        modules = {hashed for plain, hashed in manifest.items() if plain.endswith((".js", ".css"))}
        assert modules <= from_cdn  # every module and the stylesheet, by hashed name only
        assert from_cdn <= set(manifest.values())
        assert {p.removeprefix(PREFIX + "/") for p in cdn.served} == from_cdn
    finally:
        context.close()


def test_the_same_origin_dashboard_loads_hashed_files_only(page: Any, server: Server) -> None:
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    probe = watch(page)
    page.goto(server.url + "/")
    expect(page.locator("#signin-heading")).to_be_visible()
    assert probe.errors == []
    static = [u.removeprefix(server.url) for u in urls if u.startswith(server.url + "/static/")]
    assert any(u.startswith("/static/js/tasks/") for u in static)  # the import map sent nested imports on
    assert all(re.search(r"\.[0-9a-f]{12}\.(js|css|svg)$", u) for u in static), static
