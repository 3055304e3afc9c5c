"""Offset (page + total) and keyset (opaque cursor) pagination helpers.

A cursor is URL-safe base64 of a small JSON object holding the sort name and the sort key of the
last row returned. It is opaque to clients and validated on the way back in; a cursor made for one
sort is refused (422) under another.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from taskhub.core.errors import UnprocessableEntity, field_error


def encode_cursor(sort: str, key: dict[str, Any]) -> str:
    """Encode ``{"s": sort, "k": key}`` as an opaque cursor string."""
    raw = orjson.dumps({"s": sort, "k": key})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, sort: str) -> dict[str, Any]:
    """Decode a cursor made by :func:`encode_cursor` for ``sort``.

    Raises:
        UnprocessableEntity: malformed cursor, or one made for a different sort (``loc`` =
            ``["query", "cursor"]``).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or not isinstance(data.get("k"), dict):
            raise ValueError("bad cursor shape")
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise UnprocessableEntity(
            "The cursor is not valid.", errors=[field_error(["query", "cursor"], "invalid cursor")]
        ) from exc
    if data.get("s") != sort:
        raise UnprocessableEntity(
            "The cursor was made for another sort order.",
            errors=[field_error(["query", "cursor"], "cursor does not match the sort parameter")],
        )
    key: dict[str, Any] = data["k"]
    return key
