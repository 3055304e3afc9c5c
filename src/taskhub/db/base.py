"""Declarative base with a naming convention (named constraints make migrations reversible)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Dialect, MetaData, TypeDecorator, and_, or_
from sqlalchemy.orm import DeclarativeBase

from taskhub.core.timeutil import to_utc

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned aware (``tzinfo=UTC``).

    PostgreSQL keeps ``timestamptz``; SQLite stores naive UTC text, which sorts and compares
    correctly because every value is in the same zone and format.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        utc = to_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return to_utc(value)


class Base(DeclarativeBase):
    """Base of every ORM class."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with ``\\``, ``%`` and ``_`` escaped (use ``escape="\\"``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def keyset_order(column: Any, id_column: Any, *, descending: bool, nullable: bool = False) -> list[Any]:
    """``ORDER BY`` for keyset pagination: ``column`` then ``id_column`` as the tie-breaker, both
    in the same direction; a ``nullable`` column sorts its nulls last in both directions."""
    primary = column.desc() if descending else column.asc()
    if nullable:
        primary = primary.nulls_last()
    return [primary, id_column.desc() if descending else id_column.asc()]


def keyset_after(
    column: Any, id_column: Any, value: Any, last_id: Any, *, descending: bool, nullable: bool = False
) -> ColumnElement[bool]:
    """Rows strictly after ``(value, last_id)`` in the order of :func:`keyset_order`."""
    beyond_id = id_column < last_id if descending else id_column > last_id
    if nullable and value is None:
        return and_(column.is_(None), beyond_id)
    beyond = column < value if descending else column > value
    if nullable:
        return or_(beyond, and_(column == value, beyond_id), column.is_(None))
    return or_(beyond, and_(column == value, beyond_id))
