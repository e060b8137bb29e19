"""Faust tables, keyed by host so any worker can route a lookup to the one that owns it.

The 5-minute and hourly windowed tables (RocksDB) arrive with the stream-processing work.
"""
