"""The one exception the local stack raises for anything a user can act on."""

from __future__ import annotations


class StackError(Exception):
    """A local stack problem, worded for the user.

    ``headline`` is one line saying what went wrong and what to do. When a service
    failed to start, ``log_tail`` holds the last lines of its log; ``str()`` then
    prints them under the headline, since that is where the cause usually is.
    """

    def __init__(self, headline: str, log_tail: str = "") -> None:
        self.headline = headline
        self.log_tail = log_tail
        super().__init__(headline)

    def __str__(self) -> str:
        if not self.log_tail:
            return self.headline
        indented = "\n".join(f"  | {line}" for line in self.log_tail.splitlines())
        return f"{self.headline}\n{indented}"
