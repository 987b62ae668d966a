"""Runway: how long an account's credits last at the rate it spends them.

Pure arithmetic on figures in minor units; reading them is :func:`repository.burn_of`'s.

**Burn** is spend (the kinds :data:`limits.SPEND_KINDS` names: charges and captures) per
day, by one stated :data:`METHOD`: the larger of what the last 24 hours spent and the mean
day of the last 7 days (of fewer, when the account is younger), so a spike shows at once
and a quiet day does not hide a busy week. The mean is rounded up to a whole minor unit.

**Allowances excluded.** A subscription plan's allowance (lots of source
``subscription``, see ``creditsd.plans``) is left out on both sides: the unspent allowance
is not part of ``available`` (it lapses at the period's end and the next one replaces it,
so a month-start grant never makes the runway look long), and the spend the allowance paid
for is not burn (it took nothing of what the customer bought). While the plan covers
every spend the burn is 0 and there is no runway to run out.

**No runway** (``reason``): an account less than 24 hours old has ``too_little_history``;
one that burns nothing has ``no_burn``. Otherwise the credits run out after ``available ×
1 day / burn_per_day`` (rounded down: a runway is never overstated), at once when nothing
is available.

Example: 140 credits available, 70 spent in the last 7 days, 30 of them in the last 24 h:
the mean day is 10, the last day 30, so the burn is 30 a day and the runway 4⅔ days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple

METHOD = "max(spend of the last 24 h, mean daily spend of the last 7 days), allowances excluded"
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
ALLOWANCE_SOURCE = "subscription"  # the lots a plan's allowance fills
Reason = Literal["too_little_history", "no_burn"]


@dataclass(frozen=True, slots=True)
class Burn:
    """What an account spent of its own credits (allowance-paid spend left out) in the
    last day and the last 7 days before the moment it was read."""

    last_day: int
    last_week: int


@dataclass(frozen=True, slots=True)
class Runway:
    """How long ``available`` lasts at ``burn_per_day``; ``lasts`` and ``runs_out_at`` are
    None, with a ``reason``, when there is no runway to tell."""

    available: int  # what the runway divides: available credits without the allowance
    burn_per_day: int | None  # None: too little history to tell
    lasts: timedelta | None
    runs_out_at: datetime | None
    reason: Reason | None
    method: str = METHOD

    @property
    def days(self) -> Decimal | None:
        """``lasts`` in days, rounded down to hundredths (1 day 18 h: ``1.75``)."""
        if self.lasts is None:
            return None
        return Decimal(self.lasts * 100 // DAY).scaleb(-2)


def available_without_allowance(available: int, allowance: int) -> int:
    """What an account can spend that is not its plan's unspent ``allowance`` (never below
    0: open holds may reserve the allowance)."""
    return max(0, available - allowance)


def burn_per_day(burn: Burn, history: timedelta) -> int | None:
    """The daily burn by :data:`METHOD` of an account ``history`` old (None: less than a
    day of history). ``Burn(30, 70)`` over 7 days or more: ``max(30, ⌈70 / 7⌉) = 30``;
    over 2 days: ``max(30, ⌈70 / 2⌉) = 35``."""
    if history < DAY:
        return None
    span = min(history, WEEK)
    mean = -(-burn.last_week * DAY // span)  # rounded up, in whole minor units
    return max(burn.last_day, mean)


def runway(available: int, burn: Burn, history: timedelta, now: datetime) -> Runway:
    """The runway of ``available`` (allowance already left out) at ``burn``, for an account
    ``history`` old, as of ``now``."""
    per_day = burn_per_day(burn, history)
    if per_day is None:
        return Runway(available, None, None, None, "too_little_history")
    return at_burn(available, per_day, now)


def at_burn(available: int, per_day: int, now: datetime) -> Runway:
    """The runway of ``available`` at ``per_day`` as of ``now``: ``no_burn`` at 0."""
    if per_day == 0:
        return Runway(available, 0, None, None, "no_burn")
    lasts = max(available, 0) * DAY // per_day
    lasts -= lasts % timedelta(seconds=1)  # whole seconds, rounded down
    return Runway(available, per_day, lasts, now + lasts, None)


# Warnings: ``balance.runway_low`` as the runway falls below each level. The engine
# evaluates them in every batch that spends an account's credits, on the burn the worker
# stored on the account's row (``runway_burn``) and the level last told of
# (``runway_warned``), which it writes back with the account's figures.

WARNING_LEVELS = (7, 3, 1)  # days
REARM_MARGIN = (3, 2)  # a level warns again once the runway was above it × 3/2


def below(available: int, per_day: int, days: int) -> bool:
    """Whether ``available`` lasts less than ``days`` days at ``per_day``."""
    return available < days * per_day


def next_warning(available: int, per_day: int, warned: int | None) -> tuple[int | None, int | None]:
    """The level to warn of now (None: none) and the level to store as warned.

    ``warned`` is the lowest level already told of (None: none). A level re-arms once the
    runway rises above it by the margin (×1.5: above 10½ days for the 7-day level), so a
    runway hovering at a level warns once; a fall past several levels at once warns of the
    lowest only. Runway 8 → 6 days: warn 7. 6 → 5: nothing. 5 → 2: warn 3. Up to 11 (above
    10½) and down to 6: warn 7 again.
    """
    numerator, denominator = REARM_MARGIN
    if warned is not None:  # keep the lowest level whose margin the runway is still under
        still = [
            level
            for level in WARNING_LEVELS
            if level >= warned and below(available * denominator, per_day, level * numerator)
        ]
        warned = min(still, default=None)
    reached = min((lvl for lvl in WARNING_LEVELS if below(available, per_day, lvl)), default=None)
    if reached is not None and (warned is None or reached < warned):
        return reached, reached
    return None, warned


class RunwayWarning(NamedTuple):
    """An account's runway has fallen below ``level`` days (``runway`` as the batch that
    took it there leaves it): sent once per crossing."""

    account_id: str
    level: int
    runway: Runway
