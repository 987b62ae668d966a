"""What accounts spent per day, remembered once a day is over.

Transfers are never changed and are stamped with the time they are written, so a day that
ended is final: its figures are read from the database once (reading each charge's price
stamp is the costly part) and only the days still open are read again. A day counts as
over :data:`SETTLE_MARGIN` after midnight UTC, which covers clocks of a deployment's
processes that are a little apart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta

from creditsd.ledger.models import DaySpend

SETTLE_MARGIN = timedelta(minutes=5)


class SpendingMemo:
    """Per account, the spending of days that are over, from its first day asked for; the
    accounts seen least recently are forgotten beyond ``size``."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        # account → (first day, first day not remembered, what those days spent)
        self._settled: OrderedDict[str, tuple[date, date, list[DaySpend]]] = OrderedDict()

    async def days(
        self,
        account_id: str,
        first: date,
        now: datetime,
        read: Callable[[datetime], Awaitable[list[DaySpend]]],
    ) -> list[DaySpend]:
        """What the account spent from ``first`` to ``now``, per day and item; ``read(since)``
        reads the database from a moment on, for the days not remembered."""
        open_from = (now - SETTLE_MARGIN).date()
        known: list[DaySpend] = []
        start = first
        remembered = self._settled.get(account_id)
        if remembered is not None and remembered[0] <= first:
            known = [spent for spent in remembered[2] if spent.day >= first]
            start = max(first, remembered[1])
        fresh = await read(datetime.combine(start, time(), UTC))
        settled = known + [spent for spent in fresh if spent.day < open_from]
        self._settled[account_id] = (first, max(start, open_from), settled)
        self._settled.move_to_end(account_id)
        if len(self._settled) > self.size:
            self._settled.popitem(last=False)
        return known + fresh
