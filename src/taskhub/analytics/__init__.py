"""Per-user daily counters maintained from task events (``/tasks/stats/history``)."""
