"""hoststream's wiring: the CLI, the worker's bootstrap, `hoststream run`."""
