"""Bodies of the admin endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from taskhub.core.validators import not_null


class AdminUserUpdate(BaseModel):
    """``PATCH /admin/users/{id}``: change role and/or active flag."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "admin"] | None = None
    is_active: bool | None = None

    _not_null = not_null("role", "is_active")
