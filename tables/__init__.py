"""Faust tables, keyed by host so any worker can route a lookup to the one that owns it."""
