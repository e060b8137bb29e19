"""One log line per kind of client error and minute, instead of one per retry.

While the broker is away, aiokafka logs every reconnect, metadata refresh, fetch and
coordinator lookup it retries: about 80 lines a second here, 2,575 in a 33 s outage.
The worker waits them out anyway; the first line of each kind says what is wrong,
and the next one a minute later says how many were left out meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_INTERVAL_S = 60.0


class QuietRepeats(logging.Filter):
    """Let through the first record of each (logger, message template) and then one an
    interval, the latter saying how many were left out since."""

    def __init__(
        self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        """(logger, template) -> (when one last went through, how many left out since)."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        self._last[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = (
                f"{record.msg} ({last[1]} more like this in the last {now - last[0]:.0f} s)"
            )
        return True


def quiet_repeats(prefix: str, interval_s: float = REPEAT_INTERVAL_S) -> None:
    """Filter the loggers named ``prefix`` or below it that exist now (a filter applies
    only to records of the logger it is added to, not to its children's)."""
    quiet = QuietRepeats(interval_s)
    names = [
        n for n in logging.root.manager.loggerDict if n == prefix or n.startswith(prefix + ".")
    ]
    for name in names:
        logging.getLogger(name).addFilter(quiet)
