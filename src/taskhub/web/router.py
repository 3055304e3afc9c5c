"""Serves the dashboard at ``/`` and its files under ``/static/``, with a CSP that allows only our
own scripts and styles (or exactly those under ``TASKHUB_ASSET_BASE_URL``).

- ``/``: the page, rendered by :mod:`taskhub.web.assets` (hashed URLs, import map, CSP with the
  map's SHA-256); ``Cache-Control: no-cache`` and a weak ``ETag``, so a browser revalidates on
  every load and gets a bodyless 304 while nothing changed, and a deploy shows at once.
- ``/static/<hashed path>``: ``public, max-age=31536000, immutable`` (the name changes with the
  bytes), plus ``Access-Control-Allow-Origin: *`` so a CDN that pulls from here can serve module
  scripts to the page's origin (modules load in CORS mode; the files are public).
- ``/static/<plain path>``: the file as it is on disk, ``no-cache`` (``/docs`` names the favicon so,
  and a developer may open a file by its name).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from taskhub.core.etag import etag_matches
from taskhub.web.assets import IMMUTABLE, Catalog, StaticSite, media_type, page_csp

router = APIRouter(include_in_schema=False)

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _site(request: Request) -> StaticSite:
    site: StaticSite = request.app.state.static_site
    return site


@lru_cache(maxsize=256)
def _load(path: Path, mtime_ns: int, size: int) -> tuple[bytes, str]:
    """The file's bytes and weak ETag, cached until its mtime or size changes."""
    body = path.read_bytes()
    return body, 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _answer(
    request: Request, body: bytes, *, etag: str, media: str, csp: str, cache_control: str, cors: bool = False
) -> Response:
    headers = dict(_SECURITY_HEADERS)
    headers["Content-Security-Policy"] = csp
    headers["Cache-Control"] = cache_control
    headers["ETag"] = etag
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    if etag_matches(request.headers.get("if-none-match"), etag, weak=True):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media, headers=headers)


def _csp(catalog: Catalog) -> str:
    if catalog.page is not None:
        return catalog.page.csp
    return page_csp(source=None, script_hashes=(), suffixes=())


@router.get("/")
async def index(request: Request) -> Response:
    """The dashboard's single page."""
    catalog = _site(request).current()
    page = catalog.page
    if page is None:
        raise HTTPException(404, "Not Found")
    return _answer(request, page.body, etag=page.etag, media="text/html", csp=page.csp, cache_control="no-cache")


@router.get("/static/{file_path:path}")
async def static_file(file_path: str, request: Request) -> Response:
    """A static asset of the dashboard (ES modules, stylesheet, icons), by hashed or plain name."""
    site = _site(request)
    catalog = site.catalog
    asset = catalog.by_hashed.get(file_path)
    if asset is None:
        catalog = site.current()  # a file changed since the page was rendered (development)
        asset = catalog.by_hashed.get(file_path)
    if asset is not None:
        return _answer(
            request,
            asset.body,
            etag=asset.etag,
            media=asset.media_type,
            csp=_csp(catalog),
            cache_control=IMMUTABLE,
            cors=True,
        )
    root = catalog.root
    path = (root / file_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "Not Found")
    stat = path.stat()
    body, etag = _load(path, stat.st_mtime_ns, stat.st_size)
    return _answer(request, body, etag=etag, media=media_type(path.name), csp=_csp(catalog), cache_control="no-cache")
