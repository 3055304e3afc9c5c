"""Operational endpoints: liveness, readiness (metrics come with the observability issue)."""
