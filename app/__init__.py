"""hoststream's wiring: settings, the Faust app, the CLI."""
