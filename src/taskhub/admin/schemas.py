"""Bodies of the admin endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from taskhub.core.validators import not_null, without_null


class AdminUserUpdate(BaseModel):
    """``PATCH /admin/users/{id}``: change role and/or active flag."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=without_null("role", "is_active"))

    role: Literal["user", "admin"] | None = None
    is_active: bool | None = None

    _not_null = not_null("role", "is_active")
