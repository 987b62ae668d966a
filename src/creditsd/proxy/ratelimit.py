"""Requests a minute per key, counted in this process."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """A token bucket per key that holds a minute's worth of requests and refills
    continuously: a key may burst to its limit, then make one request every
    ``60 / limit`` seconds.

    The buckets live in this process: nothing is shared between processes, so a refusal
    costs no database work, and behind a load balancer spreading a key over N processes
    the key may make up to N times its limit. ``size`` bounds the keys remembered; the
    least recently seen are forgotten first (their buckets have refilled the most).
    """

    def __init__(self, *, size: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (tokens, at)

    def take(self, key: str, per_minute: int) -> int:
        """Take one request from ``key``'s bucket of ``per_minute`` (0: no limit): 0 when
        it may go now, else the whole seconds until one may (nothing taken then)."""
        if per_minute <= 0:
            return 0
        now = self.clock()
        tokens, at = self._buckets.pop(key, (per_minute, now))
        tokens = min(per_minute, tokens + (now - at) * per_minute / 60)
        wait = 0 if tokens >= 1 else math.ceil((1 - tokens) * 60 / per_minute)
        self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
        if len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return wait
