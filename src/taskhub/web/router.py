"""Serves the dashboard's static files at ``/`` with a CSP that allows only our own scripts/styles."""

from __future__ import annotations

import mimetypes
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Response
from starlette.exceptions import HTTPException

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
    return Path(str(resources.files("taskhub.web").joinpath("static")))


def _serve(relative: str) -> Response:
    root = _static_root().resolve()
    path = (root / relative).resolve()
    if root not in path.parents and path != root or not path.is_file():
        raise HTTPException(404, "Not Found")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        media_type = "text/javascript"
    headers = dict(SECURITY_HEADERS)
    headers["Cache-Control"] = "no-cache"
    return Response(path.read_bytes(), media_type=media_type, headers=headers)


@router.get("/")
async def index() -> Response:
    """The dashboard's single page."""
    return _serve("index.html")


@router.get("/static/{file_path:path}")
async def static_file(file_path: str) -> Response:
    """A static asset of the dashboard (ES modules, stylesheet, icons)."""
    return _serve(file_path)
