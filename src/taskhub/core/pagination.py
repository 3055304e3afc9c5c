"""The paging kit: offset (``page`` + ``total``) or keyset (opaque ``cursor``) pagination.

- :class:`Page` is the response shape of every paged list (``/tasks``, ``/admin/tasks``,
  ``/admin/users``).
- :func:`page_params` is the one query-parameter dependency (``limit``, ``page``, ``cursor``);
  ``page`` and ``cursor`` together are a 422.
- :class:`SortKey` describes one sort column: how its value goes into a cursor and back.

A cursor is URL-safe base64 of ``{"s": sort, "k": {"v": value, "id": id}}``: the sort name and the
key of the last row returned. It is opaque to clients and validated on the way back in; a cursor
made for one sort is refused (422) under another.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import orjson
from fastapi import Depends, Query
from pydantic import BaseModel

from taskhub.core.errors import UnprocessableEntity, field_error
from taskhub.core.timeutil import to_utc
from taskhub.core.validators import MAX_PAGE

T = TypeVar("T")

MAX_LIMIT = 100


class Page(BaseModel, Generic[T]):
    """One page of a list: ``page``/``total`` in offset mode, null with a ``cursor``."""

    items: list[T]
    limit: int
    page: int | None
    total: int | None
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Edge(Generic[T]):
    """One row of a keyset slice and the cursor that continues *after* it (the same cursor a
    page's ``next_cursor`` carries when this row ends the page)."""

    node: T
    cursor: str


@dataclass(frozen=True, slots=True)
class Slice(Generic[T]):
    """Up to ``first`` rows after a cursor, each with its own cursor (a Relay-style connection's
    ``edges``), and whether more rows follow (``pageInfo.hasNextPage``)."""

    edges: list[Edge[T]]
    has_next: bool


@dataclass(frozen=True, slots=True)
class PageParams:
    """Validated paging parameters: ``limit`` 1..100 and at most one of ``page``/``cursor``."""

    limit: int
    page: int | None
    cursor: str | None

    @property
    def offset_page(self) -> int | None:
        """The offset-mode page number (1 when neither page nor cursor was given), None in keyset mode."""
        return None if self.cursor is not None else (self.page or 1)


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    page: Annotated[int | None, Query(ge=1, le=MAX_PAGE, description="Offset paging; returns total")] = None,
    cursor: Annotated[str | None, Query(max_length=1000, description="Keyset paging from next_cursor")] = None,
) -> PageParams:
    """Parse the paging parameters; out-of-range values are 422, never clamped (SPEC "Tasks").

    Raises:
        UnprocessableEntity: ``page`` and ``cursor`` together.
    """
    if page is not None and cursor is not None:
        raise UnprocessableEntity(
            "Use either page or cursor, not both.",
            errors=[field_error(["query", "cursor"], "cannot be combined with page")],
        )
    return PageParams(limit=limit, page=page, cursor=cursor)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


@dataclass(frozen=True, slots=True)
class SortKey:
    """One sortable column as a cursor sees it.

    ``kind`` is ``"datetime"`` (ISO 8601 in the cursor, UTC) or ``"rank"`` (an integer among
    ``ranks``); ``nullable`` keys may hold null (sorted last in both directions).
    """

    name: str
    kind: Literal["datetime", "rank"]
    nullable: bool = False
    ranks: frozenset[int] = frozenset()

    def encode(self, value: Any) -> Any:
        """The JSON form of a row's ``value`` for a cursor."""
        if isinstance(value, datetime):
            return to_utc(value).isoformat()
        return value

    def decode(self, raw: Any) -> Any:
        """The column value from its cursor form. Raises: ValueError when it is not valid."""
        if raw is None:
            if not self.nullable:
                raise ValueError("cursor needs a value")
            return None
        if self.kind == "rank":
            if isinstance(raw, bool) or not isinstance(raw, int) or raw not in self.ranks:
                raise ValueError("cursor needs a rank")
            return raw
        return to_utc(datetime.fromisoformat(str(raw)))


def _invalid_cursor(detail: str = "The cursor is not valid.", msg: str = "invalid cursor") -> UnprocessableEntity:
    return UnprocessableEntity(detail, errors=[field_error(["query", "cursor"], msg)])


def encode_cursor(sort: str, key: SortKey, value: Any, row_id: uuid.UUID) -> str:
    """The cursor after a row whose sort column holds ``value`` and whose id is ``row_id``."""
    raw = orjson.dumps({"s": sort, "k": {"v": key.encode(value), "id": str(row_id)}})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, sort: str, key: SortKey) -> tuple[Any, uuid.UUID]:
    """``(value, id)`` of the last row from a cursor made by :func:`encode_cursor` for ``sort``.

    Raises:
        UnprocessableEntity: malformed cursor, one made for a different sort, or a key that does
            not fit the sort column (``loc`` = ``["query", "cursor"]``).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or not isinstance(data.get("k"), dict):
            raise ValueError("bad cursor shape")
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise _invalid_cursor() from exc
    if data.get("s") != sort:
        raise _invalid_cursor("The cursor was made for another sort order.", "cursor does not match the sort parameter")
    try:
        return key.decode(data["k"].get("v")), uuid.UUID(str(data["k"]["id"]))
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise _invalid_cursor() from exc
