"""Shapes of ``GET /tasks/stats/history``."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel


class DayStats(BaseModel):
    """One UTC day: tasks created, tasks completed, and their average creation-to-completion time
    in seconds (null on a day without completions)."""

    day: date
    created: int
    completed: int
    avg_completion_s: float | None


class StatsHistory(BaseModel):
    """The last ``days`` days, oldest first (today last)."""

    days: int
    items: list[DayStats]
