"""Input rules shared by every body, query parameter and header, applied where input is parsed, so
a bad value is a 422 naming its field wherever it arrives — never a 500 from the database.

Text (decided in ``docs/api.md``, "Text"):

- Every string must be Unicode scalar values: JSON can spell an unpaired surrogate (``"\\ud800"``),
  but it is not a character, UTF-8 cannot encode it, and neither PostgreSQL (asyncpg) nor SQLite
  can store it. NUL is refused too: PostgreSQL text cannot hold it.
- :data:`PlainText` (titles, names, tags, filters): one line — no control characters at all
  (Unicode category Cc: U+0000..U+001F, U+007F..U+009F) — normalised to NFC, so that the same
  visible text is stored, compared, de-duplicated and searched alike (W3C Character Model, "Unicode
  Normalization"; NFC is what keyboards and browsers produce).
- :data:`MultilineText` (description, search): the same, but tab, line feed and carriage return
  are allowed.
- :data:`ExactText` (email): one line, kept exactly as sent (the contract stores the email as given
  and compares a normalized form of it).
- :data:`SecretText` (passwords, refresh tokens): compared or hashed, never shown: only unpaired
  surrogates are refused (they cannot be hashed); nothing is normalized, so a password works
  exactly as it was first typed.

Other rules:

- ``UtcDatetime``: an aware datetime converted to UTC; a value whose conversion overflows
  (year 1 with a positive offset, year 9999 with a negative one) is out of range.
- ``MAX_PAGE``: offset pages beyond it would overflow the database's OFFSET (and are useless).
- :func:`not_null`: optional fields of a partial update that must not be set to null.
- :func:`header_token`: header values that are stored (``Idempotency-Key``) must be printable ASCII.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, field_validator

from taskhub.core.timeutil import to_utc

MAX_PAGE = 1_000_000

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NOT_PRINTABLE_ASCII = re.compile("[^\x20-\x7e]")


def _refuse(pattern: re.Pattern[str], value: str, what: str) -> None:
    found = pattern.search(value)
    if found is not None:
        raise ValueError(f"must not contain {what} (U+{ord(found.group()):04X} at position {found.start()})")


def _check_scalar_values(value: str) -> None:
    _refuse(_SURROGATE, value, "unpaired surrogates")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")


def nfc(value: str) -> str:
    """``value`` in Unicode Normalization Form C (unchanged, and cheap, when it already is)."""
    return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)


def plain_text(value: str) -> str:
    """One line of text in NFC. Raises: ValueError for unpaired surrogates or control characters."""
    _check_scalar_values(value)
    _refuse(_CONTROL, value, "control characters")
    return nfc(value)


def multiline_text(value: str) -> str:
    """Text in NFC that may span lines. Raises: ValueError for unpaired surrogates or control
    characters other than tab, line feed and carriage return."""
    _check_scalar_values(value)
    _refuse(_CONTROL_EXCEPT_LINES, value, "control characters other than tab, line feed and carriage return")
    return nfc(value)


def exact_text(value: str) -> str:
    """One line of text, unchanged. Raises: ValueError for unpaired surrogates or control characters."""
    _check_scalar_values(value)
    _refuse(_CONTROL, value, "control characters")
    return value


def secret_text(value: str) -> str:
    """A secret (password, token), unchanged. Raises: ValueError for unpaired surrogates."""
    _refuse(_SURROGATE, value, "unpaired surrogates")
    return value


def header_token(value: str | None) -> str | None:
    """A header value that is stored, unchanged: printable ASCII only (RFC 9110 5.5 field values
    may carry obs-text, but a key that is stored and compared must not depend on a charset).

    Raises: ValueError for any other character.
    """
    if value is not None:
        _refuse(_NOT_PRINTABLE_ASCII, value, "characters other than printable ASCII")
    return value


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC. Raises: ValueError when the conversion leaves the supported years."""
    if value is None:
        return None
    try:
        return to_utc(value)
    except OverflowError as exc:
        raise ValueError("is out of the supported date range") from exc


# The same rules as JSON Schema patterns (ECMA-262 syntax) for the OpenAPI document, so that clients
# (and Schemathesis) can see them; the validators above stay the authority.
PLAIN_PATTERN = r"^[^\u0000-\u001F\u007F-\u009F]*$"
NONBLANK_PLAIN_PATTERN = (
    r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
)
MULTILINE_PATTERN = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"

PlainText = Annotated[str, AfterValidator(plain_text)]
"""One line, NFC: titles, names, tags, tag filters."""
MultilineText = Annotated[str, AfterValidator(multiline_text)]
"""Tab, line feed and carriage return allowed, NFC: descriptions, search."""
ExactText = Annotated[str, AfterValidator(exact_text)]
"""One line, kept as sent: emails."""
SecretText = Annotated[str, AfterValidator(secret_text)]
"""Anything but unpaired surrogates, kept as sent: passwords, tokens."""
UtcDatetime = Annotated[AwareDatetime, AfterValidator(utc)]


def not_null(*fields: str) -> Any:
    """A Pydantic field validator for partial updates: ``fields`` may be omitted, but an explicit
    ``null`` is a 422 ("may not be null") instead of clearing a required value.

    Use as a class attribute: ``_not_null = not_null("title", "status")``, with
    ``json_schema_extra=without_null(...)`` of the same fields in the model's config.
    """

    def check(cls: type, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value

    return field_validator(*fields)(classmethod(check))


def without_null(*fields: str) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` for a partial-update model: the document shows ``fields`` as
    optional but not nullable (``T | None = None`` is only how "omitted" is spelled in Python)."""

    def extra(schema: dict[str, Any]) -> None:
        for name in fields:
            prop = schema["properties"][name]
            options = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
            if len(options) == 1:
                prop.update(options[0])
            elif options:
                prop["anyOf"] = options
            prop.pop("default", None)

    return extra
