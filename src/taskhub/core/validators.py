"""Input rules shared by every body and query parameter, applied where input is parsed, so a bad
value is a 422 naming its field wherever it arrives — never a 500 from the database.

- ``NoNulStr``: PostgreSQL text cannot store NUL characters.
- ``UtcDatetime``: an aware datetime converted to UTC; a value whose conversion overflows
  (year 1 with a positive offset, year 9999 with a negative one) is out of range.
- ``MAX_PAGE``: offset pages beyond it would overflow the database's OFFSET (and are useless).
- :func:`not_null`: optional fields of a partial update that must not be set to null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, field_validator

from taskhub.core.timeutil import to_utc

MAX_PAGE = 1_000_000


def no_nul(value: str | None) -> str | None:
    """``value`` unchanged. Raises: ValueError when it contains a NUL character."""
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC. Raises: ValueError when the conversion leaves the supported years."""
    if value is None:
        return None
    try:
        return to_utc(value)
    except OverflowError as exc:
        raise ValueError("is out of the supported date range") from exc


NoNulStr = Annotated[str, AfterValidator(no_nul)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(utc)]


def not_null(*fields: str) -> Any:
    """A Pydantic field validator for partial updates: ``fields`` may be omitted, but an explicit
    ``null`` is a 422 ("may not be null") instead of clearing a required value.

    Use as a class attribute: ``_not_null = not_null("title", "status")``.
    """

    def check(cls: type, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value

    return field_validator(*fields)(classmethod(check))
