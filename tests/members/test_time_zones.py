"""A wallet's time zone: its spend limits' days, weeks and months are the zone's, set by
``PUT /v1/accounts/{id}`` (audited); a change carries the window in progress, so
switching zones never gives a member its limit again early."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from creditsd.inprocess import Ledger
from creditsd.ledger.limits import LimitReached
from creditsd.members.service import LimitSpec
from tests.conftest import Clock, body, client_for, create_key, put_member
from tests.members.test_warnings import _charge, _team, _warnings

CREDIT = 10_000  # minor units of one credit at the default scale


async def _day_limit(ledger: Ledger, amount: int) -> None:
    """Ada, a member of acme, may spend ``amount`` minor units a day."""
    await put_member(ledger, "acme", "ada", limits=[LimitSpec(amount, "day")])


async def _refused(ledger: Ledger, amount: int) -> dict[str, Any]:
    """The details of Ada's charge of ``amount`` refused by her limit."""
    with pytest.raises(LimitReached) as refused:
        await ledger.charge("acme", amount, member="ada")
    return refused.value.details


@pytest.mark.parametrize(
    ("zone", "code"),
    [
        ("Mars/Olympus_Mons", "invalid_request"),
        ("localtime", "invalid_request"),
        ("europe/berlin", "invalid_request"),
        ("", "validation_error"),
        ("Europe/Berlin\u0000", "validation_error"),
        ("../etc/passwd", "validation_error"),
        ("Europe/" + "B" * 58, "validation_error"),  # 65 characters
        (9, "validation_error"),
        (True, "validation_error"),
        (["Asia/Tokyo"], "validation_error"),
        ({"name": "Asia/Tokyo"}, "validation_error"),
    ],
)
async def test_a_zone_that_is_no_iana_zone_is_refused(
    api: httpx.AsyncClient, zone: object, code: str
) -> None:
    put = await api.put("/v1/accounts/acme", json={"time_zone": zone})
    assert put.status_code == 422, put.text
    error = body(put)["error"]
    assert error["code"] == code
    assert "time_zone" in error["message"]
    named = error.get("field") or error["problems"][0]["field"]
    assert named.endswith("time_zone")
    shown = body(await api.get("/v1/accounts/acme"))
    assert (shown["created_at"], shown["time_zone"]) == (None, "UTC")  # nothing was written


async def test_the_zone_is_set_shown_and_audited(ledger: Ledger, api: httpx.AsyncClient) -> None:
    assert body(await api.put("/v1/accounts/acme"))["time_zone"] == "UTC"
    async with client_for(ledger, await create_key(ledger, "app", "chat")) as app:
        tokyo = await app.put("/v1/accounts/acme", json={"time_zone": "Asia/Tokyo"})
        assert (tokyo.status_code, body(tokyo)["time_zone"]) == (200, "Asia/Tokyo")
        assert body(await app.put("/v1/accounts/acme", json={}))["time_zone"] == "Asia/Tokyo"
        assert (
            body(await app.put("/v1/accounts/acme", json={"time_zone": None}))["time_zone"] == "UTC"
        )
    assert body(await api.get("/v1/accounts/acme"))["time_zone"] == "UTC"
    created = await api.put("/v1/accounts/nyc", json={"time_zone": "America/New_York"})
    assert (created.status_code, body(created)["time_zone"]) == (201, "America/New_York")
    assert (await ledger.get_account("nyc")).time_zone == "America/New_York"
    trail = body(await api.get("/v1/audit-log", params={"action": "account.time_zone"}))["data"]
    assert [(r["target"], r["actor"].split(":")[-1], r["before"], r["after"]) for r in trail] == [
        (
            "nyc",
            "admin-app",
            {"time_zone": "UTC"},
            {"time_zone": "America/New_York", "carried": {}},
        ),
        ("acme", "chat", {"time_zone": "Asia/Tokyo"}, {"time_zone": "UTC", "carried": {}}),
        ("acme", "chat", {"time_zone": "UTC"}, {"time_zone": "Asia/Tokyo", "carried": {}}),
    ]  # the PUT that left it as it was is not there


async def test_a_day_in_tokyo_rolls_over_at_tokyo_midnight(ledger: Ledger, clock: Clock) -> None:
    clock.now = datetime(2026, 12, 7, 23, 59, 59, tzinfo=UTC)  # 08:59:59 on the 8th in Tokyo
    await ledger.open_account("acme", time_zone="Asia/Tokyo")
    await ledger.grant("acme", 1000 * CREDIT)
    await _day_limit(ledger, 10 * CREDIT)
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    tokyo_midnight = datetime(2026, 12, 8, 15, tzinfo=UTC)
    assert (await _refused(ledger, 1))["resets_at"] == tokyo_midnight
    clock.advance(1)  # midnight in UTC: the day in Tokyo goes on
    assert (await _refused(ledger, 1))["resets_at"] == tokyo_midnight
    clock.now = datetime(2026, 12, 8, 14, 59, 59, tzinfo=UTC)
    await _refused(ledger, 1)
    clock.advance(1)  # midnight in Tokyo: a new day, no job having run
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    assert (await _refused(ledger, 1))["resets_at"] == datetime(2026, 12, 9, 15, tzinfo=UTC)


async def test_a_zone_change_carries_the_day_in_progress(
    ledger: Ledger, api: httpx.AsyncClient, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 6, 12, tzinfo=UTC)  # before the 7th began in Tokyo
    await ledger.grant("acme", 1000 * CREDIT)
    await _day_limit(ledger, 10 * CREDIT)
    clock.now = datetime(2026, 12, 7, 10, tzinfo=UTC)  # 19:00 in Tokyo
    await ledger.charge("acme", 9 * CREDIT, member="ada")
    await api.put("/v1/accounts/acme", json={"time_zone": "Asia/Tokyo"})
    # The day in progress kept its 9 and now ends at midnight in Tokyo.
    refused = await _refused(ledger, 2 * CREDIT)
    assert (refused["remaining"], refused["resets_at"]) == (
        CREDIT,
        datetime(2026, 12, 7, 15, tzinfo=UTC),
    )
    (limit,) = body(await api.get("/v1/accounts/acme/limits"))["data"]
    assert (limit["spent"], limit["window_start"]) == (9, "2026-12-07T10:00:00.000000Z")
    await ledger.charge("acme", CREDIT, member="ada")
    clock.now = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)  # 00:30 on the 8th in Tokyo
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    # Back to UTC: its day (the 7th) was not over; what Tokyo's day spent stays counted.
    await api.put("/v1/accounts/acme", json={"time_zone": "UTC"})
    refused = await _refused(ledger, 1)
    assert (refused["remaining"], refused["resets_at"]) == (0, datetime(2026, 12, 8, tzinfo=UTC))
    clock.now = datetime(2026, 12, 8, tzinfo=UTC)
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    trail = body(await api.get("/v1/audit-log", params={"action": "account.time_zone"}))["data"]
    assert [list(record["after"]["carried"].values()) for record in trail] == [[10], [9]]


async def test_a_zone_whose_windows_start_alike_keeps_them(
    ledger: Ledger, api: httpx.AsyncClient, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    await ledger.grant("acme", 1000 * CREDIT)
    await _day_limit(ledger, 10 * CREDIT)
    clock.now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    await ledger.charge("acme", 9 * CREDIT, member="ada")
    before = body(await api.get("/v1/accounts/acme/limits"))["data"]
    await api.put("/v1/accounts/acme", json={"time_zone": "Europe/London"})  # GMT in December
    assert body(await api.get("/v1/accounts/acme/limits"))["data"] == before
    (record,) = body(await api.get("/v1/audit-log", params={"action": "account.time_zone"}))["data"]
    assert record["after"] == {"time_zone": "Europe/London", "carried": {}}


async def test_a_limit_set_by_a_clock_running_ahead_counts_a_write_just_before(
    ledger: Ledger, clock: Clock
) -> None:
    started = clock.now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    await ledger.grant("acme", 1000 * CREDIT)
    clock.advance(0.5)  # another process, half a second ahead, sets the limit...
    await _day_limit(ledger, 10 * CREDIT)
    clock.now = started  # ...while a write that started at its own now waited for the lock
    await ledger.charge("acme", 10 * CREDIT, member="ada")
    await _refused(ledger, 1)


async def test_a_zone_change_keeps_the_warnings_its_window_sent(
    api: httpx.AsyncClient, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    await _team(api, {"amount": 1000, "period": "day"})
    clock.now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert await _charge(api, 850) == 201  # 85 %: the 80 % warning goes
    await api.put("/v1/accounts/acme", json={"time_zone": "Asia/Tokyo"})
    assert await _charge(api, 50) == 201  # 90 % of the window carried: told already
    assert await _charge(api, 100) == 201  # 100 %
    told = await _warnings(api)
    assert [(w["percent"], w["spent"], w["window_start"]) for w in told] == [
        (80, 850, "2026-12-07T00:00:00.000000Z"),
        (100, 1000, "2026-12-07T10:00:00.000000Z"),  # the carried window, ending in Tokyo
    ]
    assert told[1]["resets_at"] == "2026-12-07T15:00:00.000000Z"
