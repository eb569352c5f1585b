"""Helpers every stage shares: atomic writes, the hand-off tables, shards, audio I/O and rule sources."""
