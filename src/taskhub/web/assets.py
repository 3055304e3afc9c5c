"""Content-hashed dashboard assets: hashed file names, the import map, the page's CSP, the export.

Every file under the static directory (walked, never listed by hand; dot files skipped) except the
entry page ``index.html`` gets a second, content-addressed name: ``js/app.js`` ->
``js/app.<h>.js`` with ``<h>`` the first :data:`HASH_LENGTH` hex digits of the SHA-256 of the bytes
served under it. A hashed URL never changes meaning, so it may be cached for a year
(``immutable``); the page that names them is revalidated on every load.

ES modules import each other by relative specifiers (``import ... from "./api.js"``). A browser
resolves those against the importing module's URL to a *plain* URL; an import map in the page
(HTML standard, "import maps") maps every module's plain URL to its hashed one. Rewriting the
specifiers inside the modules instead would need a JavaScript parser (comments, strings, dynamic
``import()``) and would cascade: a change to a leaf module would change the hash of every module
that imports it, directly or not, and of their importers. With the map, a change to one file
changes one URL. The map is an inline script, so the page's CSP allows it by its SHA-256.

Stylesheets are the exception: ``url(...)`` and ``@import`` are not module specifiers and import
maps do not apply to them, so a stylesheet's relative references to other static files are
rewritten to the hashed names (relative again, so the bytes do not depend on where they are
served) before its own hash is taken.

With ``TASKHUB_ASSET_BASE_URL`` the page names ``<base>/<hashed path>`` (a CDN) instead of
``/static/<hashed path>``, and its CSP allows that base, path included, instead of ``'self'`` for
the kinds of files that exist (scripts, styles, images, fonts).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import mimetypes
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

#: Hex digits of SHA-256 in a hashed name: 48 bits, so two versions of one file collide with
#: probability 2**-48 (a collision would serve an old file for a year under ``immutable``).
HASH_LENGTH = 12
#: The page; rendered by the app (import map, CSP hash, URLs), never hashed or exported.
ENTRY = "index.html"
#: Where the app serves the static directory.
STATIC_PREFIX = "/static"
#: The export's file mapping each plain path to its hashed path.
MANIFEST = "manifest.json"
#: Suffixes a browser can load as a module (``import``, ``import()``, import attributes): the
#: import map names these; images and fonts never pass through it.
MODULE_SUFFIXES = frozenset({".js", ".mjs", ".json", ".css", ".wasm"})
IMMUTABLE = "public, max-age=31536000, immutable"

_KINDS = {
    "script-src": frozenset({".js", ".mjs", ".wasm"}),
    "style-src": frozenset({".css"}),
    "img-src": frozenset({".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".ico"}),
    "font-src": frozenset({".woff2", ".woff", ".ttf", ".otf"}),
}
# url(x), url('x'), url("x") and @import "x" / @import 'x' in a stylesheet.
_CSS_REF = re.compile(
    r"""url\(\s*(?P<q>['"]?)(?P<url>[^'")\s]+)(?P=q)\s*\)"""
    r"""|@import\s+(?P<q2>['"])(?P<url2>[^'"]+)(?P=q2)"""
)
# src="/static/..." and href="/static/..." attributes of the page.
_HTML_REF = re.compile(r"""(?P<attr>\s(?:src|href)=)(?P<q>["'])/static/(?P<path>[^"'?#]+)(?P=q)""")
_FIRST_LOAD = re.compile(r"<(?:script|link)\b", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class AssetError(ValueError):
    """The static directory cannot be served: the page names a missing file, or stylesheets
    import each other in a cycle. Raised at start-up (and by ``taskhub export-static``)."""


def packaged_root() -> Path:
    """The dashboard's files as installed with the package (``taskhub/web/static``)."""
    return Path(str(resources.files("taskhub.web").joinpath("static"))).resolve()


def media_type(name: str) -> str:
    """The ``Content-Type`` for a file name (JavaScript as ``text/javascript``, RFC 9239)."""
    if name.endswith((".js", ".mjs")):
        return "text/javascript"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def weak_etag(body: bytes) -> str:
    """A weak ETag of ``body`` (weak: gzip may change the bytes on the wire, not the meaning)."""
    return 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def hashed_name(path: str, body: bytes) -> str:
    """``js/app.js`` and its bytes -> ``js/app.<12 hex>.js`` (no suffix: ``name.<12 hex>``)."""
    digest = hashlib.sha256(body).hexdigest()[:HASH_LENGTH]
    head, name = posixpath.split(path)
    stem, dot, suffix = name.rpartition(".")
    new = f"{stem}.{digest}.{suffix}" if dot and stem else f"{name}.{digest}"
    return posixpath.join(head, new)


@dataclass(frozen=True)
class Asset:
    """One static file under its hashed name: ``path`` and ``hashed`` are relative to the static
    directory with ``/`` separators; ``body`` is what the hashed URL serves."""

    path: str
    hashed: str
    body: bytes
    etag: str
    media_type: str


@dataclass(frozen=True)
class Page:
    """The rendered entry page: body, weak ETag and the Content-Security-Policy it needs."""

    body: bytes
    etag: str
    csp: str


def _signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative path, mtime ns, size) of every file to serve, sorted: changes when any file does."""
    found: list[tuple[str, int, int]] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue  # editor swap files, .DS_Store
            full = os.path.join(directory, name)
            stat = os.stat(full)
            found.append((Path(full).relative_to(root).as_posix(), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))


def _css_target(css_path: str, ref: str, files: Mapping[str, bytes]) -> tuple[str, str] | None:
    """The static file a stylesheet reference names and the ``?query#fragment`` it keeps, or None
    for data:, absolute, external and unknown references (left as written)."""
    if ref.startswith(("#", "//")) or _SCHEME.match(ref):
        return None
    cut = min((i for i in (ref.find("?"), ref.find("#")) if i >= 0), default=len(ref))
    target, rest = ref[:cut], ref[cut:]
    if target.startswith(STATIC_PREFIX + "/"):
        resolved = posixpath.normpath(target[len(STATIC_PREFIX) + 1 :])
    elif target.startswith("/"):
        return None
    else:
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(css_path), target))
    return (resolved, rest) if resolved in files and resolved != ENTRY else None


@dataclass
class _Builder:
    files: dict[str, bytes]
    assets: dict[str, Asset] = field(default_factory=dict)
    visiting: set[str] = field(default_factory=set)

    def asset(self, path: str) -> Asset:
        done = self.assets.get(path)
        if done is not None:
            return done
        body = self.files[path]
        if path.endswith(".css"):
            body = self._rewrite_css(path, body)
        made = Asset(path, hashed_name(path, body), body, weak_etag(body), media_type(path))
        self.assets[path] = made
        return made

    def _rewrite_css(self, path: str, body: bytes) -> bytes:
        if path in self.visiting:
            raise AssetError(f"stylesheets import each other in a cycle through {path}")
        self.visiting.add(path)
        directory = posixpath.dirname(path)

        def replace(match: re.Match[str]) -> str:
            ref = match.group("url") or match.group("url2")
            found = _css_target(path, ref, self.files)
            if found is None:
                return match.group(0)
            target, rest = found
            relative = posixpath.relpath(self.asset(target).hashed, directory or ".") + rest
            if match.group("url"):
                return f"url({match.group('q')}{relative}{match.group('q')})"
            return f"@import {match.group('q2')}{relative}{match.group('q2')}"

        text = body.decode("utf-8")
        rewritten = _CSS_REF.sub(replace, text).encode("utf-8")
        self.visiting.discard(path)
        return rewritten


def csp_source(base_url: str) -> str:
    """The CSP source expression that allows exactly the files under ``base_url``: its origin and
    path with a trailing ``/``, which CSP Level 3 matches as a path prefix."""
    return base_url.rstrip("/") + "/"


def page_csp(*, source: str | None, script_hashes: Iterable[str], suffixes: Iterable[str]) -> str:
    """The dashboard's Content-Security-Policy.

    Args:
        source: the asset origin's source expression (:func:`csp_source`), or None when the assets
            are served by the app itself (``'self'``).
        script_hashes: ``'sha256-...'`` expressions of the page's inline scripts (the import map).
        suffixes: the suffixes of the files served; with ``source`` set, a directive allows it in
            place of ``'self'`` only when files of its kind exist (nothing wider than used).
    """
    present = set(suffixes)
    allowed = {}
    for directive, kinds in _KINDS.items():
        allowed[directive] = source if source is not None and present & kinds else "'self'"
    script = " ".join([allowed["script-src"], *script_hashes])
    return (
        f"default-src 'self'; script-src {script}; style-src {allowed['style-src']}; "
        f"img-src {allowed['img-src']} data:; connect-src 'self'; font-src {allowed['font-src']}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


@dataclass(frozen=True)
class Catalog:
    """The static directory at one moment: every asset by plain and by hashed path, and the page.

    ``base`` is where the page says the hashed files are: ``/static`` (this app) or the validated
    ``TASKHUB_ASSET_BASE_URL`` without a trailing slash.
    """

    root: Path
    base: str
    signature: tuple[tuple[str, int, int], ...]
    by_path: Mapping[str, Asset]
    by_hashed: Mapping[str, Asset]
    page: Page | None

    @classmethod
    def scan(cls, root: Path, *, base_url: str | None = None) -> Catalog:
        """Read and hash every file under ``root``; render ``root/index.html`` when present.

        Raises:
            AssetError: the page names a ``/static/`` file that does not exist, or stylesheets
                import each other in a cycle.
        """
        root = root.resolve()
        signature = _signature(root)
        files = {path: (root / path).read_bytes() for path, _, _ in signature}
        builder = _Builder(files)
        for path in files:
            if path != ENTRY:
                builder.asset(path)
        by_path = dict(sorted(builder.assets.items()))
        by_hashed = {a.hashed: a for a in by_path.values()}
        base = base_url.rstrip("/") if base_url else STATIC_PREFIX
        page = None
        if ENTRY in files:
            page = _render(files[ENTRY].decode("utf-8"), by_path, base=base, external=base_url is not None)
        return cls(root, base, signature, by_path, by_hashed, page)

    def url(self, asset: Asset) -> str:
        """Where the page loads ``asset`` from."""
        return f"{self.base}/{asset.hashed}"

    def manifest(self) -> dict[str, str]:
        """Plain path -> hashed path of every asset, sorted by plain path."""
        return {path: asset.hashed for path, asset in self.by_path.items()}

    def changed(self) -> bool:
        """True when a file under the root was added, removed or modified since the scan."""
        return _signature(self.root) != self.signature

    def export(self, target: Path) -> tuple[int, int]:
        """Write every asset under its hashed path below ``target`` and ``manifest.json``.

        Idempotent and additive: a file already there with the same bytes is left alone; files of
        older versions are never deleted (a rolling deploy serves old pages and new ones at once).
        Each file is written to a temporary name and renamed, so a reader never sees half a file.

        Returns:
            (files written, files already present).
        """
        written = unchanged = 0
        for asset in self.by_path.values():
            if _write_if_different(target / asset.hashed, asset.body):
                written += 1
            else:
                unchanged += 1
        manifest = (json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n").encode()
        _write_if_different(target / MANIFEST, manifest)
        return written, unchanged


def _write_if_different(path: Path, body: bytes) -> bool:
    if path.is_file() and path.read_bytes() == body:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(body)
    temporary.replace(path)
    return True


def _render(source: str, assets: Mapping[str, Asset], *, base: str, external: bool) -> Page:
    """The page with hashed URLs, the import map before its first script or link, and its CSP."""

    def replace(match: re.Match[str]) -> str:
        path = posixpath.normpath(match.group("path"))
        asset = assets.get(path)
        if asset is None:
            raise AssetError(f"{ENTRY} references /static/{match.group('path')}, which is not in the static directory")
        q = match.group("q")
        return f"{match.group('attr')}{q}{html.escape(f'{base}/{asset.hashed}')}{q}"

    text = _HTML_REF.sub(replace, source)
    imports = {
        f"{base}/{path}": f"{base}/{asset.hashed}"
        for path, asset in assets.items()
        if posixpath.splitext(path)[1] in MODULE_SUFFIXES
    }
    hashes: list[str] = []
    if imports:
        # "<" escaped: no file name can end the script element early.
        body = json.dumps({"imports": imports}, indent=1).replace("<", "\\u003c")
        hashes.append("'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'")
        tag = f'<script type="importmap">{body}</script>\n  '
        first = _FIRST_LOAD.search(text)
        at = first.start() if first else text.lower().index("</head>")
        text = text[:at] + tag + text[at:]
    rendered = text.encode("utf-8")
    csp = page_csp(
        source=csp_source(base) if external else None,
        script_hashes=hashes,
        suffixes={posixpath.splitext(path)[1] for path in assets},
    )
    return Page(rendered, weak_etag(rendered), csp)


class StaticSite:
    """The catalog the app serves. With ``watch`` (development) it is rescanned when a file
    changes, so a front-end developer's edit shows on the next page load without a restart (one
    ``stat`` per file on page loads and on unknown hashed names); without it (production: an
    installed package never changes) the scan made at start is served as it is.

    Raises:
        AssetError: from the constructor and from :meth:`current`, see :meth:`Catalog.scan`.
    """

    def __init__(self, root: Path, *, base_url: str | None = None, watch: bool = True) -> None:
        self.root = root
        self.base_url = base_url
        self.watch = watch
        self._catalog = Catalog.scan(root, base_url=base_url)

    @property
    def catalog(self) -> Catalog:
        """The last scan (no file system access)."""
        return self._catalog

    def current(self) -> Catalog:
        """The catalog; when watching, rescanned first if any file changed since the last scan."""
        if self.watch and self._catalog.changed():
            self._catalog = Catalog.scan(self.root, base_url=self.base_url)
        return self._catalog
