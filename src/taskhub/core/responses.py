"""Fast JSON responses from Pydantic models (serialized once by pydantic-core, no re-validation)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel
from starlette.responses import Response


def model_response(model: BaseModel, *, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A ``application/json`` response with ``model`` serialized by ``model_dump_json``."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json", headers=headers)
