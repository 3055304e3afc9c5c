"""The ``analytics`` consumer of task events."""

from __future__ import annotations

from taskhub.analytics.service import on_task_event
from taskhub.events.dispatch import Consumer

CONSUMER = Consumer(
    name="analytics", handler=on_task_event, types=frozenset({"task.created", "task.completed", "task.deleted"})
)
