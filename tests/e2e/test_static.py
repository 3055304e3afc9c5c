"""The dashboard's files as served by the real process: CSP everywhere, revalidation, no inline code
(the page's one inline script, the import map, is added when served: ``tests/web/test_assets.py``)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

STATIC = Path(str(resources.files("taskhub.web").joinpath("static")))
FILES = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())


def test_every_file_is_served_by_its_plain_name_with_the_strict_csp_and_revalidates(server: Server) -> None:
    assert "index.html" in FILES and "app.css" in FILES and "js/app.js" in FILES
    with httpx.Client(base_url=server.url) as c:
        for name in FILES:
            url = "/" if name == "index.html" else f"/static/{name}"
            r = c.get(url)
            assert r.status_code == 200, name
            csp = r.headers["content-security-policy"]
            assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/]{43}=';", csp) and "style-src 'self';" in csp, (
                name
            )
            assert "unsafe" not in csp
            assert r.headers["cache-control"] == "no-cache"
            assert r.headers["x-content-type-options"] == "nosniff"
            if name.endswith(".js"):
                assert r.headers["content-type"].startswith("text/javascript")
            again = c.get(url, headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304, name
            assert again.content == b""
        assert c.get("/static/js/nope.js").status_code == 404
        assert c.get("/static/..%2f..%2fconfig.py").status_code == 404


def test_html_has_no_inline_script_or_style() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "<style" not in html
    for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
        assert tag.strip() == ""


# The one thing kept in Web Storage: the light/dark choice, by js/theme.js, under one key.
THEME_MODULE = "js/theme.js"


@pytest.mark.parametrize("name", [n for n in FILES if n.endswith(".js")])
def test_scripts_never_parse_data_as_html_or_persist_tokens(name: str) -> None:
    source = (STATIC / name).read_text()
    banned = [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "sessionStorage",
        "document.cookie",
        'setAttribute("style"',
    ]
    if name != THEME_MODULE:
        banned.append("localStorage")
    for word in banned:
        assert word not in source, f"{name} uses {word}"


def test_only_the_theme_is_kept_in_web_storage() -> None:
    source = (STATIC / THEME_MODULE).read_text()
    uses = re.findall(r"localStorage\.(\w+)\(([^)]*)\)", source)
    assert uses == [("getItem", "KEY"), ("setItem", "KEY, next")]
    assert 'const KEY = "taskhub-theme";' in source
