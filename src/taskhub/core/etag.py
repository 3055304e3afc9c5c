"""Entity tags and conditional-request matching (RFC 9110 sections 8.8.3 and 13.1).

One implementation for the API (task versions) and the dashboard's static files.
"""

from __future__ import annotations


def strong_etag(value: str | int) -> str:
    """The strong entity tag ``"<value>"``."""
    return f'"{value}"'


def etag_matches(header: str | None, etag: str, *, weak: bool) -> bool:
    """True when an ``If-Match``/``If-None-Match`` field value lists ``etag`` or is ``*``.

    ``weak=False`` is the strong comparison ``If-Match`` requires (RFC 9110 13.1.1: a ``W/``
    validator never matches); ``weak=True`` the weak comparison of ``If-None-Match`` (13.1.2).
    ``header`` None or empty never matches.
    """
    if not header:
        return False
    wanted = etag.removeprefix("W/") if weak else etag
    if not weak and etag.startswith("W/"):
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if weak:
            candidate = candidate.removeprefix("W/")
        if candidate == "*" or candidate == wanted:
            return True
    return False
