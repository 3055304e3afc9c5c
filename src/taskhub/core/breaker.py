"""A minimal circuit breaker for optional dependencies (Redis).

After a failure, calls are skipped for ``cooldown`` seconds, so an outage costs one timeout per
cooldown instead of one per request (the "circuit breaker" pattern, Nygard, *Release It!*).
"""

from __future__ import annotations

import time


class CircuitBreaker:
    """Open for ``cooldown`` seconds after :meth:`trip`; closed again by :meth:`reset` or time."""

    def __init__(self, cooldown: float = 2.0) -> None:
        self.cooldown = cooldown
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        """True while calls should be skipped."""
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        """Record a failure: skip calls for ``cooldown`` seconds."""
        self._open_until = time.monotonic() + self.cooldown

    def reset(self) -> None:
        """Record a success."""
        self._open_until = 0.0
