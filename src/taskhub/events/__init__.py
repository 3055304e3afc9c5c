"""Domain events: the transactional outbox (relay, broker and SSE come with the events issue)."""
