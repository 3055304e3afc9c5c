"""Bodies of the authentication endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from taskhub.core.timezones import TimeZoneName
from taskhub.core.validators import SecretText
from taskhub.users.schemas import Email, Name, Password, StrictModel


class RegisterRequest(StrictModel):
    """``POST /auth/register``; ``time_zone`` (IANA name) defaults to ``UTC``."""

    email: Email
    password: Password
    name: Name
    time_zone: TimeZoneName = "UTC"


class LoginRequest(StrictModel):
    """``POST /auth/login``: credentials are checked as a whole (same 401 for either mistake)."""

    email: Annotated[SecretText, Field(max_length=400)]  # compared, never stored: see docs/api.md "Text"
    password: Password


class RefreshRequest(StrictModel):
    """``POST /auth/refresh``; the body may be empty when the refresh cookie is sent."""

    refresh_token: Annotated[SecretText, Field(max_length=200)] | None = None


class LogoutRequest(StrictModel):
    """``POST /auth/logout``: optionally the refresh token whose family should be revoked."""

    refresh_token: Annotated[SecretText, Field(max_length=200)] | None = None


class TokenPair(BaseModel):
    """A new access token (JWT) and refresh token (opaque); ``expires_in`` in seconds."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
