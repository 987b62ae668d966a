"""The windows a spend limit counts in, and the rules its settings must keep.

A limit of a ``day``, ``week`` or ``month`` counts its spend per calendar window of the
wallet's time zone (UTC unless the account names one): days from midnight to midnight,
weeks from Monday, months from the 1st. A ``lifetime`` limit has one window that never
ends. There is no reset: the counter of a limit is keyed by the start of the window the
spend fell in, so a new window simply starts a new counter. A limit set or changed at
``since`` counts nothing spent before: its window never starts earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

from creditsd.kit.errors import InvalidRequest
from creditsd.ledger.errors import Units

CalendarPeriod = Literal["day", "week", "month"]
Period = CalendarPeriod | Literal["lifetime"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "lifetime")  # each nests in the next

# Keys available_timezones() may list that name no place: the server's own zone (a symlink
# some systems keep beside the zones) and tzdata's placeholder for "not set yet".
_NOT_PLACES = frozenset({"localtime", "Factory"})


@dataclass(frozen=True, slots=True)
class Window:
    """The instants ``start <= t < end`` (UTC) a limit counts together; a ``lifetime``
    window has no ``end``."""

    start: datetime
    end: datetime | None


def window_of(period: Period, at: datetime, zone: ZoneInfo, since: datetime) -> Window:
    """The window of ``period`` in ``zone`` that holds the instant ``at``, for a limit set
    at ``since`` (``since <= at``): the calendar window (:func:`calendar_window`), or, for
    the one the limit was set in, from ``since`` to its calendar end. A ``lifetime``
    window starts at ``since`` and never ends."""
    assert since.tzinfo is not None, "instants must be timezone-aware"
    assert since <= at, f"spend at {at} counted for a limit set later, at {since}"
    return since_set(calendar_window(period, at, zone), since)


def since_set(calendar: Window | None, since: datetime) -> Window:
    """A limit's window, for one set at ``since``: the ``calendar`` window (None for
    ``lifetime``), never starting before ``since``."""
    since = since.astimezone(UTC)
    if calendar is None:
        return Window(since, None)
    return Window(max(calendar.start, since), calendar.end)


def calendar_window(period: Period, at: datetime, zone: ZoneInfo) -> Window | None:
    """The calendar window of ``period`` in ``zone`` that holds the instant ``at`` (None
    for ``lifetime``, which has none).

    A calendar window starts at the first instant whose local date is its first day (or a
    later one, should the clocks skip that day), so a day lasts 23 or 25 hours across a
    change of summer time, a midnight that happens twice starts the day the first time,
    and a day whose midnight the clocks skip starts when they jump past it. In
    America/Santiago, where summer time starts at midnight, 8 September 2024 has no 00:00:
    ``calendar_window("day", datetime(2024, 9, 8, 12, tzinfo=UTC), santiago)`` is
    ``Window(2024-09-08 04:00Z, 2024-09-09 03:00Z)``, its 01:00 to the next midnight,
    23 hours.
    """
    assert at.tzinfo is not None, "instants must be timezone-aware"
    if period == "lifetime":
        return None
    first = _first_day(period, at.astimezone(zone).date())
    following = _following(period, first)
    # Clocks turned back across midnight (Antarctica/Casey, March 2010) can take the local
    # date back a day after the next window started; `at` then belongs to that window.
    while (end := _start_of(following, zone)) <= at:
        first, following = following, _following(period, following)
    return Window(_start_of(first, zone), end)


def _first_day(period: CalendarPeriod, day: date) -> date:
    """The first day of the ``period`` that holds ``day``."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _following(period: CalendarPeriod, first: date) -> date:
    """The first day of the ``period`` after the one starting on ``first``."""
    if period == "day":
        return first + timedelta(days=1)
    if period == "week":
        return first + timedelta(weeks=1)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) whose local date in ``zone`` is ``day`` or later."""
    midnight = datetime.combine(day, time(), zone)
    earlier, later = sorted(midnight.replace(fold=fold).astimezone(UTC) for fold in (0, 1))
    if earlier.astimezone(zone).date() >= day:
        return earlier  # midnight happened: once, or twice with the clocks turned back
    # The clocks jumped over midnight, at an instant after `earlier` and no later than
    # `later` (the midnight read at the offsets after and before the jump): find it.
    while later - earlier > timedelta.resolution:
        middle = earlier + (later - earlier) / 2
        if middle.astimezone(zone).date() >= day:
            later = middle
        else:
            earlier = middle
    return later


def check_zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``). Only the zones the
    machine's time zone database lists are taken, so paths (``../x``, ``/etc/x``), empty or
    overlong names, NUL, anything but a string, and the server's ``localtime`` or tzdata's
    ``Factory`` are refused with an ``InvalidRequest`` on the field ``time_zone``."""
    if not isinstance(name, str) or name not in _zones():
        raise InvalidRequest(
            "time_zone must be an IANA time zone, like Europe/Berlin or UTC", field="time_zone"
        )
    return ZoneInfo(name)


@cache
def _zones() -> frozenset[str]:
    """The IANA zones of the machine's time zone database (read once: it walks folders)."""
    return frozenset(available_timezones() - _NOT_PLACES)


class LimitsNotNested(InvalidRequest):
    """A subject's limits must nest: its day limit at most its week limit, and so on."""

    code = "limits_not_nested"

    def __init__(self, shorter: Period, low: int, longer: Period, high: int) -> None:
        super().__init__(
            f"the {shorter} limit is above the {longer} limit",
            shorter=shorter,
            shorter_amount=Units(low),
            longer=longer,
            longer_amount=Units(high),
        )


def check_nested(amounts: Mapping[Period, int]) -> None:
    """Raise ``LimitsNotNested`` unless the limits set (a missing period is skipped) keep
    day ≤ week ≤ month ≤ lifetime."""
    limits = [(period, amounts[period]) for period in PERIODS if period in amounts]
    for (shorter, low), (longer, high) in pairwise(limits):
        if low > high:
            raise LimitsNotNested(shorter, low, longer, high)
