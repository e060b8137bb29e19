"""Entry point of the BigQuery emulator process: ``python -m stack.bigquery_main start ...``.

bqemulator downloads DuckDB's spatial extension at start and exits when that
fails, which it always does offline; nothing in its flags or environment turns
that off. Here a failure costs only the GEOGRAPHY functions, which hoststream
does not use, so it is logged once and ignored.
"""

from __future__ import annotations

import sys
from typing import Any


def _tolerate_missing_spatial() -> None:
    from bqemulator.storage.engine import DuckDBEngine

    load_spatial = DuckDBEngine._load_spatial

    def tolerant(self: Any) -> None:
        try:
            load_spatial(self)
        except Exception as exc:
            print(
                "hoststream: DuckDB spatial extension unavailable, GEOGRAPHY functions will "
                f"fail ({type(exc).__name__}); continuing",
                file=sys.stderr,
                flush=True,
            )

    DuckDBEngine._load_spatial = tolerant  # type: ignore[method-assign]


def main() -> None:
    """Patch the spatial extension loader, then hand over to bqemulator's CLI."""
    try:
        from bqemulator import cli
    except ImportError as exc:
        sys.exit(f"{exc}: install the emulators: pip install 'hoststream[emulators]'")
    _tolerate_missing_spatial()
    cli.main()


if __name__ == "__main__":
    main()
