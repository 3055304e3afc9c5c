"""Content-hashed dashboard files through HTTP (the ASGI app with its lifespan, embedded SQLite):
hashed URLs in the page, immutable caching, the import map and its CSP hash, a changed file, the
CDN base URL and its validation, stylesheet references (``taskhub/web/assets.py``)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from taskhub.app import create_app
from taskhub.config import Settings
from taskhub.web.assets import AssetError, packaged_root
from tests.conftest import JWT_SECRET, client_for

pytestmark = pytest.mark.asyncio

IMMUTABLE = "public, max-age=31536000, immutable"
STATIC = packaged_root()
#: Every file the dashboard has, found by walking (the front end grows without this test changing).
FILES = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file() and p.name[0] != ".")
#: What a page can import as a module (``import``, CSS and JSON module scripts): the map names these.
MODULES = [f for f in FILES if f.rsplit(".", 1)[-1] in ("js", "mjs", "json", "css", "wasm")]
IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)
REFERENCES = re.compile(r'\s(?:src|href)="([^"]+)"')
CDN = "https://cdn.example.com/taskhub"


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "jwt_secret": JWT_SECRET,
        "log_level": "WARNING",
        "rate_limit_enabled": False,
        "relay_enabled": False,
        "purge_interval": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def open_app(tmp_path: Path) -> Callable[..., Any]:
    """``async with open_app(static_root=..., asset_base_url=...) as client``: a started app."""

    @asynccontextmanager
    async def start(static_root: Path | None = None, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings(tmp_path, **overrides), static_root=static_root)
        async with LifespanManager(app), client_for(app) as client:
            yield client

    return start


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def expected_csp(script: str, style: str, img: str, font: str) -> str:
    return (
        f"default-src 'self'; script-src {script}; style-src {style}; img-src {img} data:; connect-src 'self'; "
        f"font-src {font}; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def import_map(page: str) -> dict[str, str]:
    found = IMPORT_MAP.findall(page)
    assert len(found) == 1
    imports: dict[str, str] = json.loads(found[0])["imports"]
    return imports


def hashed(path: str, body: bytes) -> str:
    stem, suffix = path.rsplit(".", 1)
    return f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{suffix}"


class TestSameOrigin:
    async def test_no_file_outside_the_static_directory_is_served(self, open_app: Callable[..., Any]) -> None:
        # Percent-encoded dot segments: httpx removes literal ones before sending, the app gets these.
        # ``web/router.py`` sits next to the static directory, so a missing containment check serves it.
        async with open_app() as client:
            for path in ("/static/%2e%2e/router.py", "/static/js/%2e%2e/%2e%2e/router.py"):
                r = await client.get(path)
                assert r.status_code == 404, (path, r.status_code)

    async def test_every_url_in_the_page_is_hashed_resolves_and_is_immutable(
        self, open_app: Callable[..., Any]
    ) -> None:
        async with open_app() as client:
            r = await client.get("/")
            assert r.status_code == 200
            assert r.headers["cache-control"] == "no-cache"
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            again = await client.get("/", headers={"If-None-Match": r.headers["etag"]})
            assert (again.status_code, again.content) == (304, b"")

            imports = import_map(r.text)
            # Every module found on disk is in the map under its plain URL, and nothing else.
            assert imports == {f"/static/{m}": f"/static/{hashed(m, (STATIC / m).read_bytes())}" for m in MODULES}
            refs = REFERENCES.findall(r.text)
            assert "/static/js/app.js" not in refs and "/static/app.css" not in refs
            static_refs = [u for u in refs if u.startswith("/static/")]
            assert f"/static/{hashed('js/app.js', (STATIC / 'js/app.js').read_bytes())}" in static_refs
            assert f"/static/{hashed('favicon.svg', (STATIC / 'favicon.svg').read_bytes())}" in static_refs

            for url in sorted({*static_refs, *imports.values()}):
                plain = re.sub(r"\.[0-9a-f]{12}(\.[a-z]+)$", r"\1", url.removeprefix("/static/"))
                asset = await client.get(url)
                assert asset.status_code == 200, url
                assert asset.headers["cache-control"] == IMMUTABLE, url
                assert asset.headers["access-control-allow-origin"] == "*"
                assert asset.headers["x-content-type-options"] == "nosniff"
                assert asset.content == (STATIC / plain).read_bytes(), url  # no url() in app.css today
                assert url == f"/static/{hashed(plain, asset.content)}"
                if url.endswith(".js"):
                    assert asset.headers["content-type"] == "text/javascript; charset=utf-8"
                revalidated = await client.get(url, headers={"If-None-Match": asset.headers["etag"]})
                assert (revalidated.status_code, revalidated.content) == (304, b""), url

    async def test_the_csp_allows_the_import_map_by_its_hash_and_nothing_else_inline(
        self, open_app: Callable[..., Any]
    ) -> None:
        async with open_app() as client:
            r = await client.get("/")
            script = "'self' " + sha256_source(IMPORT_MAP.findall(r.text)[0])
            csp = expected_csp(script, "'self'", "'self'", "'self'")
            assert r.headers["content-security-policy"] == csp
            # The map comes before the first script or link: a map after a module load is ignored.
            assert r.text.index('<script type="importmap">') < r.text.index("<link")
            assert len(re.findall(r"<script\b", r.text)) == 2  # the map and the one module script
            for path in ("/static/app.css", "/static/js/app.js"):  # plain names: still served, revalidated
                plain = await client.get(path)
                assert plain.status_code == 200
                assert plain.headers["cache-control"] == "no-cache"
                assert plain.headers["content-security-policy"] == csp
                assert "access-control-allow-origin" not in plain.headers

    async def test_a_changed_file_gets_a_new_hash_and_only_it(
        self, open_app: Callable[..., Any], tmp_path: Path
    ) -> None:
        root = tmp_path / "static"
        shutil.copytree(STATIC, root)
        async with open_app(static_root=root) as client:
            before = import_map((await client.get("/")).text)
            old_api = before["/static/js/api.js"]
            with (root / "js/api.js").open("a") as f:
                f.write("\n// changed\n")
            new_file = root / "js" / "later.js"  # a module added while running (the front end grows)
            new_file.write_text("export const later = 1;\n")
            after = import_map((await client.get("/")).text)
            new_api = after["/static/js/api.js"]
            assert new_api != old_api
            assert new_api == f"/static/{hashed('js/api.js', (root / 'js/api.js').read_bytes())}"
            # Modules that import api.js keep their URL: the map, not their bytes, points them on.
            assert {k: v for k, v in after.items() if k not in ("/static/js/api.js", "/static/js/later.js")} == {
                k: v for k, v in before.items() if k != "/static/js/api.js"
            }
            assert after["/static/js/later.js"] == f"/static/{hashed('js/later.js', new_file.read_bytes())}"
            assert (await client.get(new_api)).content == (root / "js/api.js").read_bytes()
            assert (await client.get(old_api)).status_code == 404  # an old hash never serves new bytes

    async def test_in_production_the_files_of_the_start_are_served_without_rescans(
        self, open_app: Callable[..., Any], tmp_path: Path
    ) -> None:
        root = tmp_path / "static"
        shutil.copytree(STATIC, root)
        async with open_app(static_root=root, env="production") as client:
            before = import_map((await client.get("/")).text)
            with (root / "js/api.js").open("a") as f:
                f.write("\n// changed\n")
            assert import_map((await client.get("/")).text) == before
            assert (await client.get(before["/static/js/api.js"])).status_code == 200

    async def test_a_page_naming_a_missing_file_stops_the_start(self, tmp_path: Path) -> None:
        root = tmp_path / "static"
        root.mkdir()
        (root / "index.html").write_text('<html><head><link rel="stylesheet" href="/static/gone.css"></head></html>')
        app = create_app(settings(tmp_path), static_root=root)
        with pytest.raises(AssetError, match=r"index.html references /static/gone.css"):
            async with LifespanManager(app):
                pass


class TestStylesheets:
    async def test_references_to_static_files_are_rewritten_to_hashed_relative_names(
        self, open_app: Callable[..., Any], tmp_path: Path
    ) -> None:
        root = tmp_path / "static"
        (root / "img").mkdir(parents=True)
        (root / "fonts").mkdir()
        (root / "css").mkdir()
        (root / "img" / "dot.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        (root / "fonts" / "f.woff2").write_bytes(b"wOF2 font")
        (root / "css" / "base.css").write_text(
            "@font-face { src: url('/static/fonts/f.woff2?v=1#x'); }\n.a { background: url(../img/dot.svg); }\n"
        )
        (root / "css" / "app.css").write_text(
            '@import "base.css";\n.b { background: url("data:image/png;base64,AA"); }\n'
            ".c { background: url(https://elsewhere.example/x.png); }\n.d { background: url(missing.png); }\n"
        )
        (root / "index.html").write_text('<html><head><link rel="stylesheet" href="/static/css/app.css"></head></html>')
        dot = hashed("img/dot.svg", (root / "img/dot.svg").read_bytes())
        font = hashed("fonts/f.woff2", b"wOF2 font")
        base_css = f"@font-face {{ src: url('../{font}?v=1#x'); }}\n.a {{ background: url(../{dot}); }}\n".encode()
        app_css = (
            f'@import "{hashed("css/base.css", base_css).removeprefix("css/")}";\n'
            '.b { background: url("data:image/png;base64,AA"); }\n'
            ".c { background: url(https://elsewhere.example/x.png); }\n.d { background: url(missing.png); }\n"
        ).encode()
        async with open_app(static_root=root, asset_base_url=CDN) as client:
            page = await client.get("/")
            assert f'href="{CDN}/{hashed("css/app.css", app_css)}"' in page.text
            assert (await client.get(f"/static/{hashed('css/app.css', app_css)}")).content == app_css
            assert (await client.get(f"/static/{hashed('css/base.css', base_css)}")).content == base_css
            # Fonts and images exist, so the CSP names the CDN for them too; no scripts: 'self' and the map.
            source = CDN + "/"
            script = "'self' " + sha256_source(IMPORT_MAP.findall(page.text)[0])
            assert page.headers["content-security-policy"] == expected_csp(script, source, source, source)

    async def test_stylesheets_importing_each_other_stop_the_start(self, tmp_path: Path) -> None:
        root = tmp_path / "static"
        root.mkdir()
        (root / "a.css").write_text('@import "b.css";')
        (root / "b.css").write_text('@import "a.css";')
        app = create_app(settings(tmp_path), static_root=root)
        with pytest.raises(AssetError, match="cycle"):
            async with LifespanManager(app):
                pass


class TestAssetBaseUrl:
    async def test_the_page_names_exactly_the_cdn_and_the_csp_allows_exactly_it(
        self, open_app: Callable[..., Any]
    ) -> None:
        async with open_app(asset_base_url=CDN + "/") as client:
            r = await client.get("/")
            imports = import_map(r.text)
            assert imports == {f"{CDN}/{m}": f"{CDN}/{hashed(m, (STATIC / m).read_bytes())}" for m in MODULES}
            refs = [u for u in REFERENCES.findall(r.text) if "://" in u]
            assert refs == [
                f"{CDN}/{hashed('app.css', (STATIC / 'app.css').read_bytes())}",
                f"{CDN}/{hashed('favicon.svg', (STATIC / 'favicon.svg').read_bytes())}",
                f"{CDN}/{hashed('js/app.js', (STATIC / 'js/app.js').read_bytes())}",
            ]
            assert "/static/" not in r.text
            script = f"{CDN}/ " + sha256_source(IMPORT_MAP.findall(r.text)[0])
            # No fonts in the dashboard: font-src stays 'self', nothing wider than used.
            assert r.headers["content-security-policy"] == expected_csp(script, f"{CDN}/", f"{CDN}/", "'self'")
            # The app still serves the hashed files (a CDN may pull them from here).
            first = refs[2].removeprefix(CDN)
            assert (await client.get(f"/static{first}")).headers["cache-control"] == IMMUTABLE

    @pytest.mark.parametrize(
        ("value", "normalized"),
        [
            ("https://cdn.example.com/taskhub/", "https://cdn.example.com/taskhub"),
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
            ("https://[::1]:8443/a/b", "https://[::1]:8443/a/b"),
        ],
    )
    async def test_valid_values_are_kept_without_the_trailing_slash(
        self, tmp_path: Path, value: str, normalized: str
    ) -> None:
        assert settings(tmp_path, asset_base_url=value).asset_base_url == normalized

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("cdn.example.com/taskhub", "no http(s) scheme and host"),
            ("ftp://cdn.example.com", "no http(s) scheme and host"),
            ("https:///taskhub", "no http(s) scheme and host"),
            ("https://cdn.example.com/taskhub?v=1", "has a query or fragment"),
            ("https://cdn.example.com/taskhub#x", "has a query or fragment"),
            ("https://cdn.example.com/?", "has a query or fragment"),
            ("https://user:pw@cdn.example.com", "carries user info"),
            ("https://cdn.example.com:99999", "the port of"),
            ("https://cdn.example.com/a;b", "holds characters outside"),
            ("https://cdn.example.com/a'b", "holds characters outside"),
            ('https://cdn.example.com/"><script>', "holds characters outside"),
            ("https://cdn.example.com/a b", "holds characters outside"),
        ],
    )
    async def test_invalid_values_are_refused_naming_the_variable(
        self, tmp_path: Path, value: str, problem: str
    ) -> None:
        with pytest.raises(ValidationError) as raised:
            settings(tmp_path, asset_base_url=value)
        message = str(raised.value)
        assert "TASKHUB_ASSET_BASE_URL must be an http(s) URL without query or fragment" in message
        assert problem in message
