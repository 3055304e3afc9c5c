"""Typed errors of the tasks domain."""

from taskhub.core.errors import Conflict, NotFound, PreconditionFailed, UnprocessableEntity


class TaskNotFound(NotFound):
    """404: no such task, or not the caller's (no existence leak)."""

    slug, title = "task-not-found", "Task not found"


class VersionMismatch(PreconditionFailed):
    """412: ``If-Match`` names another version, or a concurrent write got there first."""

    slug, title = "version-mismatch", "Task was modified"


class IdempotencyKeyReused(UnprocessableEntity):
    """422: the ``Idempotency-Key`` was used with a different body."""

    slug, title = "idempotency-key-reused", "Idempotency key reused with a different request"


class IdempotencyKeyInFlight(Conflict):
    """409: another request with the same ``Idempotency-Key`` is being processed right now."""

    slug, title = "idempotency-key-in-flight", "Request with this idempotency key in progress"
