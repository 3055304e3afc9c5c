"""Dialect-specific ``INSERT ... ON CONFLICT`` for the two supported databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Any) -> Any:
    """An ``INSERT`` into ``table`` that supports ``on_conflict_do_nothing/do_update`` on the
    session's dialect (PostgreSQL or SQLite, which share the syntax)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)
