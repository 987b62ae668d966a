"""Log lines that could repeat without bound (a failure met by every request while the
database is down, every refused connection) are said once per ``QUIET_SECONDS``, with a
count of the times held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

QUIET_SECONDS = 10.0
_REMEMBERED = 1000  # distinct messages kept; ever-new texts must not grow memory


class Repeats:
    """Remembers when each message was last said, and how often it was held back since."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def say(self, logger: logging.Logger, message: str) -> None:
        """Log ``message`` as an error unless it was said within ``QUIET_SECONDS``."""
        now = self._clock()
        said_at, held = self._last.get(message, (now - QUIET_SECONDS, 0))
        if now - said_at < QUIET_SECONDS:
            self._last[message] = (said_at, held + 1)
            return
        if len(self._last) >= _REMEMBERED:
            self._last.clear()
        self._last[message] = (now, 0)
        again = f" (and {held} more times in {QUIET_SECONDS:g} s)" if held else ""
        logger.error("%s%s", message, again)

    def forget(self) -> None:
        """Say every message again the next time it comes (a new test, a new process)."""
        self._last.clear()


repeats = Repeats()
