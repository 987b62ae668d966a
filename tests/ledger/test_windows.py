"""The windows a spend limit counts in: calendar days, weeks and months of a time zone,
across summer-time changes, cut at the moment the limit was set; the zone names a wallet
may use; limits that must nest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditsd.kit.errors import InvalidRequest
from creditsd.ledger.windows import (
    PERIODS,
    CalendarPeriod,
    LimitsNotNested,
    Period,
    Window,
    check_nested,
    check_zone,
    window_of,
)

LONG_AGO = datetime(1900, 1, 1, tzinfo=UTC)  # a limit set before any instant of a test
UTC_ZONE = ZoneInfo("UTC")
TICK = timedelta(microseconds=1)


def utc(*fields: int) -> datetime:
    """The UTC instant of the fields ``year, month, day[, hour, minute, …]``."""
    return datetime(*fields, tzinfo=UTC)  # type: ignore[arg-type, misc]


def local(zone: str, *fields: int, fold: int = 0) -> datetime:
    """The instant of a wall-clock time in ``zone``."""
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[arg-type, misc]


def window(period: Period, at: datetime, zone: str = "UTC") -> Window:
    """The window of a limit set long ago."""
    return window_of(period, at, ZoneInfo(zone), LONG_AGO)


def hours(span: Window) -> float:
    assert span.end is not None
    return (span.end - span.start) / timedelta(hours=1)


def test_periods_nest_in_order() -> None:
    assert PERIODS == ("day", "week", "month", "lifetime")


# --- UTC calendars -----------------------------------------------------------------------


def test_a_utc_day_runs_midnight_to_midnight() -> None:
    assert window("day", utc(2024, 5, 17, 13, 45)) == Window(utc(2024, 5, 17), utc(2024, 5, 18))


def test_the_last_microsecond_is_the_old_day_and_midnight_the_new_one() -> None:
    assert window("day", utc(2024, 5, 18) - TICK) == Window(utc(2024, 5, 17), utc(2024, 5, 18))
    assert window("day", utc(2024, 5, 18)) == Window(utc(2024, 5, 18), utc(2024, 5, 19))


def test_a_week_runs_monday_to_monday() -> None:
    sunday_night = utc(2024, 5, 20) - TICK
    assert sunday_night.weekday() == 6
    assert window("week", sunday_night) == Window(utc(2024, 5, 13), utc(2024, 5, 20))
    assert window("week", utc(2024, 5, 20)) == Window(utc(2024, 5, 20), utc(2024, 5, 27))
    assert window("week", utc(2024, 5, 15, 12)) == Window(utc(2024, 5, 13), utc(2024, 5, 20))


@pytest.mark.parametrize(
    ("year", "month", "days"),
    [(2024, 2, 29), (2023, 2, 28), (2100, 2, 28), (2000, 2, 29), (2024, 4, 30), (2024, 1, 31)],
)
def test_a_month_runs_from_the_first_to_the_next(year: int, month: int, days: int) -> None:
    span = window("month", utc(year, month, 15))
    assert span == Window(utc(year, month, 1), utc(year, month, 1) + timedelta(days=days))


def test_december_ends_at_the_new_year() -> None:
    assert window("month", utc(2025, 1, 1) - TICK) == Window(utc(2024, 12, 1), utc(2025, 1, 1))
    assert window("month", utc(2025, 1, 1)) == Window(utc(2025, 1, 1), utc(2025, 2, 1))


def test_an_instant_in_another_offset_is_placed_by_its_instant() -> None:
    at = datetime.fromisoformat("2024-05-18T01:30:00+02:00")  # 23:30 UTC on the 17th
    assert window("day", at) == Window(utc(2024, 5, 17), utc(2024, 5, 18))


# --- Zones far from UTC ------------------------------------------------------------------


def test_a_day_at_plus_fourteen_hours_starts_the_day_before_in_utc() -> None:
    kiritimati = "Pacific/Kiritimati"
    day = Window(utc(2024, 5, 16, 10), utc(2024, 5, 17, 10))
    assert window("day", local(kiritimati, 2024, 5, 17, 23, 59), kiritimati) == day
    assert window("day", utc(2024, 5, 17, 10), kiritimati).start == utc(2024, 5, 17, 10)
    march = window("month", utc(2024, 2, 29, 10), kiritimati)
    assert march == Window(utc(2024, 2, 29, 10), utc(2024, 3, 31, 10))


def test_a_day_at_minus_eleven_hours_ends_the_day_after_in_utc() -> None:
    pago_pago = "Pacific/Pago_Pago"
    day = Window(utc(2024, 5, 16, 11), utc(2024, 5, 17, 11))
    assert window("day", utc(2024, 5, 17, 10), pago_pago) == day
    december = window("month", utc(2025, 1, 1, 10), pago_pago)
    assert december == Window(utc(2024, 12, 1, 11), utc(2025, 1, 1, 11))


# --- Summer time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "start", "end", "length"),
    [
        # Clocks go forward at 02:00 / back at 03:00 in Berlin.
        ("Europe/Berlin", utc(2024, 3, 30, 23), utc(2024, 3, 31, 22), 23),
        ("Europe/Berlin", utc(2024, 10, 26, 22), utc(2024, 10, 27, 23), 25),
        # And at 02:00 in New York, both ways.
        ("America/New_York", utc(2024, 3, 10, 5), utc(2024, 3, 11, 4), 23),
        ("America/New_York", utc(2024, 11, 3, 4), utc(2024, 11, 4, 5), 25),
    ],
)
def test_a_day_across_a_summer_time_change_lasts_23_or_25_hours(
    zone: str, start: datetime, end: datetime, length: int
) -> None:
    span = Window(start, end)
    for at in (start, start + timedelta(hours=12), end - TICK):
        assert window("day", at, zone) == span
    assert hours(span) == length


def test_a_week_across_a_summer_time_change_is_an_hour_short() -> None:
    span = window("week", utc(2024, 3, 27), "Europe/Berlin")
    assert span == Window(utc(2024, 3, 24, 23), utc(2024, 3, 31, 22))
    assert hours(span) == 7 * 24 - 1


def test_a_day_whose_midnight_is_skipped_starts_when_the_clocks_jump() -> None:
    # Santiago went from 2024-09-07 23:59:59 (−04) to 2024-09-08 01:00 (−03).
    santiago = "America/Santiago"
    jump = utc(2024, 9, 8, 4)
    assert (jump - TICK).astimezone(ZoneInfo(santiago)).isoformat().startswith("2024-09-07T23:59")
    assert jump.astimezone(ZoneInfo(santiago)).isoformat() == "2024-09-08T01:00:00-03:00"
    assert window("day", jump - TICK, santiago) == Window(utc(2024, 9, 7, 4), jump)
    assert window("day", utc(2024, 9, 8, 12), santiago) == Window(jump, utc(2024, 9, 9, 3))
    assert window("day", jump, santiago).start == jump


def test_a_day_that_ends_with_the_clocks_turned_back_from_midnight_lasts_25_hours() -> None:
    # Santiago went from 2024-04-06 23:59:59 (−03) back to 2024-04-06 23:00 (−04).
    santiago = "America/Santiago"
    span = window("day", local(santiago, 2024, 4, 6, 23, 30, fold=1), santiago)
    assert span == Window(utc(2024, 4, 6, 3), utc(2024, 4, 7, 4))
    assert window("day", local(santiago, 2024, 4, 6, 23, 30, fold=0), santiago) == span


def test_a_midnight_that_happens_twice_starts_the_day_the_first_time() -> None:
    # Havana went from 2024-11-03 00:59:59 (−04) back to 2024-11-03 00:00 (−05).
    havana = "America/Havana"
    span = Window(utc(2024, 11, 3, 4), utc(2024, 11, 4, 5))
    assert window("day", local(havana, 2024, 11, 3, 0, 0, fold=0), havana) == span
    assert window("day", local(havana, 2024, 11, 3, 0, 30, fold=1), havana) == span
    assert window("day", utc(2024, 11, 3, 4) - TICK, havana).end == span.start


@pytest.mark.parametrize(
    ("at", "span"),
    [
        # Beirut skipped 2024-03-31 00:00 (to 01:00), and repeated 2024-10-26 23:00 to 24:00.
        (utc(2024, 3, 31, 12), Window(utc(2024, 3, 30, 22), utc(2024, 3, 31, 21))),
        (utc(2024, 10, 26, 12), Window(utc(2024, 10, 25, 21), utc(2024, 10, 26, 22))),
    ],
)
def test_beirut_changes_its_clocks_at_midnight(at: datetime, span: Window) -> None:
    assert window("day", at, "Asia/Beirut") == span


def test_a_midnight_inside_a_gap_starts_the_day_at_the_jump() -> None:
    # Toronto went from 1919-03-30 23:30 (−05) to 1919-03-31 00:30 (−04) at 04:30 UTC.
    assert window("day", utc(1919, 3, 31, 12), "America/Toronto").start == utc(1919, 3, 31, 4, 30)
    assert window("day", utc(1919, 3, 30, 12), "America/Toronto").end == utc(1919, 3, 31, 4, 30)


def test_a_skipped_day_has_no_window_of_its_own() -> None:
    # Apia went from 2011-12-29 23:59:59 (−10) to 2011-12-31 00:00 (+14): no 30 December.
    apia = "Pacific/Apia"
    jump = utc(2011, 12, 30, 10)
    assert window("day", jump - TICK, apia) == Window(utc(2011, 12, 29, 10), jump)
    assert window("day", jump, apia) == Window(jump, utc(2011, 12, 31, 10))


def test_clocks_turned_back_across_midnight_leave_the_instant_in_the_new_day() -> None:
    # Casey went from 2010-03-05 01:59:59 (+11) back to 2010-03-04 23:00 (+8): the 4th
    # comes back for an hour after the 5th began; that hour counts in the 5th.
    casey = "Antarctica/Casey"
    back_on_the_fourth = utc(2010, 3, 4, 15, 30)
    assert back_on_the_fourth.astimezone(ZoneInfo(casey)).day == 4
    span = window("day", back_on_the_fourth, casey)
    assert span == Window(utc(2010, 3, 4, 13), utc(2010, 3, 5, 16))
    assert window("day", utc(2010, 3, 4, 12), casey).end == span.start


# --- Since ---------------------------------------------------------------------------------


def test_a_limit_set_during_a_window_counts_from_then_to_the_calendar_end() -> None:
    since = utc(2024, 5, 15, 9, 30)  # a Wednesday
    assert window_of("day", utc(2024, 5, 15, 20), UTC_ZONE, since) == Window(
        since, utc(2024, 5, 16)
    )
    assert window_of("week", since, UTC_ZONE, since) == Window(since, utc(2024, 5, 20))
    assert window_of("month", utc(2024, 5, 31), UTC_ZONE, since) == Window(since, utc(2024, 6, 1))


def test_the_windows_after_the_one_a_limit_was_set_in_are_whole() -> None:
    since = utc(2024, 5, 15, 9, 30)
    assert window_of("day", utc(2024, 5, 16, 1), UTC_ZONE, since) == Window(
        utc(2024, 5, 16), utc(2024, 5, 17)
    )
    assert window_of("week", utc(2024, 5, 15), UTC_ZONE, utc(2024, 5, 13)).start == utc(2024, 5, 13)


def test_since_is_read_as_an_instant_whatever_its_offset() -> None:
    since = datetime.fromisoformat("2024-05-15T11:30:00+02:00")
    span = window_of("day", utc(2024, 5, 15, 20), ZoneInfo("Europe/Berlin"), since)
    assert span == Window(utc(2024, 5, 15, 9, 30), utc(2024, 5, 15, 22))
    assert span.start.tzinfo is UTC


def test_a_lifetime_window_starts_when_the_limit_was_set_and_never_ends() -> None:
    since = datetime.fromisoformat("2024-05-15T11:30:00+02:00")
    span = window_of("lifetime", utc(2031, 1, 1), ZoneInfo("Europe/Berlin"), since)
    assert span == Window(utc(2024, 5, 15, 9, 30), None)
    assert span.start.tzinfo is UTC


def test_spend_before_the_limit_was_set_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        window_of("day", utc(2024, 5, 15), UTC_ZONE, utc(2024, 5, 15, 0, 0, 1))


def test_a_naive_instant_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        window_of("day", datetime(2024, 5, 15), UTC_ZONE, datetime(2024, 5, 14))


# --- Windows tile time ---------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1902, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(
    period=st.sampled_from(["day", "week", "month"]),
    at=instants,
    zone=st.timezones(),
)
def test_consecutive_windows_tile_time(
    period: CalendarPeriod, at: datetime, zone: ZoneInfo
) -> None:
    span = window_of(period, at, zone, LONG_AGO)
    assert span.end is not None
    assert span.start <= at < span.end
    assert span.start.tzinfo is UTC and span.end.tzinfo is UTC
    assert window_of(period, span.start, zone, LONG_AGO) == span
    assert window_of(period, span.end, zone, LONG_AGO).start == span.end
    assert window_of(period, span.start - TICK, zone, LONG_AGO).end == span.start


@given(
    period=st.sampled_from(["day", "week", "month"]),
    at=instants,
    ago=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    zone=st.timezones(),
)
def test_a_window_starts_at_its_calendar_start_or_since_whichever_is_later(
    period: CalendarPeriod, at: datetime, ago: timedelta, zone: ZoneInfo
) -> None:
    calendar = window_of(period, at, zone, LONG_AGO)
    assert window_of(period, at, zone, at - ago) == Window(
        max(calendar.start, at - ago), calendar.end
    )


# --- Zone names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+5"]
)
def test_an_iana_zone_is_taken(name: str) -> None:
    assert check_zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../etc/passwd",
        "Europe/../UTC",
        "/etc/localtime",
        "/usr/share/zoneinfo/UTC",
        "posix/Europe/Berlin",
        "Europe/Berlin\0",
        "Europe/" + "B" * 58,  # 65 characters
        "localtime",
        "Factory",
        "posixrules",
        "europe/berlin",
        "Mars/Olympus_Mons",
    ],
)
def test_a_name_that_is_no_iana_zone_is_refused(name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_zone(name)
    assert refused.value.code == "invalid_request"
    assert refused.value.status == 422
    assert refused.value.details == {"field": "time_zone"}
    assert "time_zone" in refused.value.message


# --- Nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amounts",
    [
        {},
        {"month": 5},
        {"day": 100, "week": 100, "month": 300, "lifetime": 1_000},
        {"day": 100, "lifetime": 100},
        {"week": 700, "month": 3_000},
    ],
)
def test_limits_that_nest_are_taken(amounts: dict[Period, int]) -> None:
    check_nested(amounts)


@pytest.mark.parametrize(
    ("amounts", "message"),
    [
        ({"day": 1_500, "month": 1_000}, "the day limit is above the month limit"),
        ({"day": 100, "week": 50, "month": 10}, "the day limit is above the week limit"),
        (
            {"month": 2_000, "lifetime": 1_999},
            "the month limit is above the lifetime limit",
        ),
        (
            {"day": 10, "week": 80, "lifetime": 70},
            "the week limit is above the lifetime limit",
        ),
    ],
)
def test_limits_that_do_not_nest_are_refused(amounts: dict[Period, int], message: str) -> None:
    with pytest.raises(LimitsNotNested) as refused:
        check_nested(amounts)
    assert isinstance(refused.value, InvalidRequest)
    assert (refused.value.code, refused.value.status) == ("limits_not_nested", 422)
    assert refused.value.message == message
    shorter, longer = refused.value.details["shorter"], refused.value.details["longer"]
    assert refused.value.details == {
        "shorter": shorter,
        "shorter_amount": amounts[shorter],
        "longer": longer,
        "longer_amount": amounts[longer],
    }
