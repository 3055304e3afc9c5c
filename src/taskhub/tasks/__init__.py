"""Tasks: CRUD, filters, search, paging, stats, ETags and idempotent creation."""
