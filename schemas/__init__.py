"""Typed records and the pure rules over them; imports nothing else of hoststream."""
