"""Test helpers that reach below HTTP only where the contract forbids HTTP (first admin, outbox)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from taskhub.context import AppContext
from taskhub.events.models import OutboxEvent
from taskhub.users import repository as user_repo


def ctx_of(app: FastAPI) -> AppContext:
    """The app's context."""
    ctx: AppContext = app.state.ctx
    return ctx


async def promote_to_admin(app: FastAPI, email: str) -> None:
    """Make ``email`` an admin, as ``taskhub create-admin`` does for an existing account."""
    from taskhub.core.security import normalize_email

    async with ctx_of(app).db.unit_of_work() as session:
        user = await user_repo.get_by_email(session, normalize_email(email))
        assert user is not None
        user.role = "admin"


async def outbox_events(app: FastAPI) -> list[dict[str, Any]]:
    """Every outbox payload, in publication order."""
    async with ctx_of(app).db.unit_of_work(readonly=True) as session:
        rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars()
        return [dict(r.payload) for r in rows]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition -> ``{(sample name, frozenset(labels)): value}`` (the official parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The value of ``name{labels}`` (exact label set), 0.0 when absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)
