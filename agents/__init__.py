"""Faust agents, one module each, named after what they do."""
