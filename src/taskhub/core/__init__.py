"""Cross-cutting building blocks that know no domain."""
