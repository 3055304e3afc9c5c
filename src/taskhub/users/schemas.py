"""Request and response bodies of the user endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from taskhub.core.pagination import Page, SortKey
from taskhub.core.security import normalize_email
from taskhub.core.timezones import TimeZoneName
from taskhub.core.validators import NONBLANK_PLAIN_PATTERN, ExactText, PlainText, SecretText, not_null, without_null


def _check_email(value: str) -> str:
    value = value.strip()
    if len(value) > 320 or len(normalize_email(value)) > 320:
        raise ValueError("must be at most 320 characters")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid email address: {exc}") from exc
    return value


def _check_name(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 100:
        raise ValueError("must be 1..100 characters after trimming")
    return value


Email = Annotated[ExactText, Field(max_length=400, json_schema_extra={"format": "email"}), AfterValidator(_check_email)]
"""An email address, trimmed; stored as given, compared in normalized form."""
Name = Annotated[
    PlainText,
    Field(max_length=400, json_schema_extra={"maxLength": 100, "pattern": NONBLANK_PLAIN_PATTERN}),
    AfterValidator(_check_name),
]
Password = Annotated[SecretText, Field(max_length=1000)]


class StrictModel(BaseModel):
    """Rejects unknown fields (SPEC "Conventions")."""

    model_config = ConfigDict(extra="forbid")


class UserRead(BaseModel):
    """A user as clients see it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: Literal["user", "admin"]
    is_active: bool
    time_zone: str
    created_at: datetime
    updated_at: datetime


class UserUpdate(StrictModel):
    """``PATCH /users/me``: a new ``email`` needs ``current_password`` in the same body; a new
    ``time_zone`` moves the user's all-day tasks to the end of their day in that zone."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=without_null("name", "email", "time_zone"))

    name: Name | None = None
    email: Email | None = None
    time_zone: TimeZoneName | None = None
    current_password: Password | None = None

    _not_null = not_null("name", "email", "time_zone")


class PasswordChange(StrictModel):
    """``POST /users/me/password``."""

    current_password: Password
    new_password: Password


class AccountDelete(StrictModel):
    """``DELETE /users/me``: the password confirms the deletion."""

    current_password: Password


class UserPage(Page[UserRead]):
    """A page of users (admin list), shaped like the task page."""


USER_SORT = "-created_at"
"""The one order of the admin user list: newest first, ties by id."""
USER_SORT_KEY = SortKey("created_at", "datetime")
