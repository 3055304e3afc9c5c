"""Serves the dashboard's static files at ``/`` with a CSP that allows only our own scripts/styles.

Files are sent with ``Cache-Control: no-cache`` and a weak ``ETag`` (a hash of the bytes): the
browser revalidates on every load and gets a bodyless 304 while nothing changed, so a deploy is
picked up at once without a build step that fingerprints file names.
"""

from __future__ import annotations

import hashlib
import mimetypes
from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from taskhub.core.etag import etag_matches

router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _static_root() -> Path:
    return Path(str(resources.files("taskhub.web").joinpath("static"))).resolve()


@lru_cache(maxsize=256)
def _load(path: Path, mtime_ns: int, size: int) -> tuple[bytes, str]:
    """The file's bytes and weak ETag, cached until its mtime or size changes."""
    body = path.read_bytes()
    return body, 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(relative: str, request: Request) -> Response:
    root = _static_root()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "Not Found")
    stat = path.stat()
    body, etag = _load(path, stat.st_mtime_ns, stat.st_size)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        media_type = "text/javascript"
    headers = dict(SECURITY_HEADERS)
    headers["Cache-Control"] = "no-cache"
    headers["ETag"] = etag
    if etag_matches(request.headers.get("if-none-match"), etag, weak=True):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


@router.get("/")
async def index(request: Request) -> Response:
    """The dashboard's single page."""
    return _serve("index.html", request)


@router.get("/static/{file_path:path}")
async def static_file(file_path: str, request: Request) -> Response:
    """A static asset of the dashboard (ES modules, stylesheet, icons)."""
    return _serve(file_path, request)
