"""The ``notifications`` consumer of task events."""

from __future__ import annotations

from taskhub.events.dispatch import Consumer
from taskhub.notifications.service import on_task_completed

CONSUMER = Consumer(name="notifications", handler=on_task_completed, types=frozenset({"task.completed"}))
