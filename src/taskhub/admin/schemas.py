"""Bodies of the admin endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator


class AdminUserUpdate(BaseModel):
    """``PATCH /admin/users/{id}``: change role and/or active flag."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "admin"] | None = None
    is_active: bool | None = None

    @field_validator("role", "is_active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value
