"""Failed console sign-ins, counted per client address, in this process.

A client may fail :data:`FREE_FAILURES` times in a row; the failure that reaches it shuts
the client out for 1 second, and each failure after that (once the client may try again)
doubles the wait, up to :data:`LONGEST_WAIT` seconds: 5 failures, then 1, 2, 4 … 512,
900, 900 … seconds. A success forgets the client, and so does an hour without a
failure (a typo now and then never adds up to a wait). At most ``size`` clients are
remembered; the least recently failed are forgotten first.

Nothing is shared between processes: behind a load balancer over N processes a client
gets up to N times the tries, and a restart forgets every count. An admin key has 256 bits
of randomness, so the back-off does not stand between a guesser and the key (nothing
could); it keeps a guesser or a broken script from hammering the database and the log.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime, timedelta

FREE_FAILURES = 5
LONGEST_WAIT = 900  # seconds: 15 minutes
FORGET_AFTER = timedelta(hours=1)  # longer than LONGEST_WAIT, so a guesser never is


class SignInBackoff:
    """How long each client must wait before its next sign-in, from its failures."""

    def __init__(self, *, size: int = 10_000) -> None:
        self.size = size
        # failures in a row, when the last one was, when the client may try again
        self._clients: OrderedDict[str, tuple[int, datetime, datetime]] = OrderedDict()

    def wait(self, client: str, now: datetime) -> int:
        """Whole seconds before ``client`` may try again (0: now)."""
        found = self._clients.get(client)
        if found is None:
            return 0
        return max(0, math.ceil((found[2] - now).total_seconds()))

    def failed(self, client: str, now: datetime) -> None:
        """Count a failed sign-in of ``client``."""
        failures, last, _ = self._clients.pop(client, (0, now, now))
        failures = 1 if now - last > FORGET_AFTER else failures + 1
        beyond = min(failures - FREE_FAILURES, LONGEST_WAIT.bit_length())  # 2**10 > 900
        seconds = 0 if beyond < 0 else min(LONGEST_WAIT, 2**beyond)
        self._clients[client] = (failures, now, now + timedelta(seconds=seconds))
        if len(self._clients) > self.size:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        self._clients.pop(client, None)
