"""``/tasks/stats/history``: the caller's daily counters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from taskhub.analytics import service
from taskhub.analytics.schemas import StatsHistory
from taskhub.auth.dependencies import CurrentUser
from taskhub.context import ReadSession
from taskhub.core.responses import model_response
from taskhub.core.timeutil import utcnow

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.get("/stats/history", response_model=StatsHistory)
async def stats_history(
    user: CurrentUser, session: ReadSession, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> Response:
    """Tasks created and completed per UTC day over the last ``days`` days (today last), with the
    average creation-to-completion time. Maintained from events: a write shows here once its
    event was applied (in-process within a moment; with a broker, once a worker consumed it)."""
    return model_response(await service.history(session, user.id, days, utcnow().date()))
