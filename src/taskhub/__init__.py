"""Taskhub: a multi-user task-management service (REST API, JWT auth, roles, dashboard)."""

__version__ = "0.1.0"
