"""Interactive API docs (Swagger UI) served from vendored files, so ``/docs`` works offline.

Swagger UI 5.35.0 from the npm package ``swagger-ui-dist`` (Apache-2.0), kept in ``docs_static/``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def with_csp(page: HTMLResponse) -> HTMLResponse:
    """``page`` with a Content-Security-Policy that allows its own files and exactly the inline
    scripts it contains (by SHA-256, CSP Level 2): Swagger UI starts itself with one. Its styles
    set inline ``style`` attributes, hence ``'unsafe-inline'`` for styles only."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    return page


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Swagger UI for ``/openapi.json``; "Authorize" logs in through ``/api/v1/auth/token``."""
    return with_csp(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Taskhub API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    """The OAuth2 redirect page Swagger UI needs."""
    return with_csp(get_swagger_ui_oauth2_redirect_html())


@router.get("/docs/assets/{name}")
async def swagger_asset(name: str) -> Response:
    """A vendored Swagger UI file (cached for a day; the name changes with the version)."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, "Not Found")
    return Response(_asset(name), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


@cache
def _asset(name: str) -> bytes:
    """The bytes of a vendored file, read once per process."""
    return Path(str(resources.files("taskhub.ops").joinpath("docs_static", name))).read_bytes()
