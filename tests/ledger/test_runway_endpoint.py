"""``GET /v1/accounts/{id}/runway``, as a dashboard with a read key sees it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from creditsd.inprocess import Ledger
from creditsd.ledger.runway import METHOD
from tests.conftest import Clock, body, client_for, create_key

CREDIT = 10_000


async def test_a_read_key_sees_how_long_the_credits_last(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("ada", 100 * CREDIT, source="purchase")
    async with client_for(ledger, await create_key(ledger, "read")) as api:
        young = await api.get("/v1/accounts/ada/runway")
        assert young.status_code == 200
        assert body(young) == {
            "available": 100,
            "burn_per_day": None,
            "method": METHOD,
            "runway_days": None,
            "runs_out_at": None,
            "reason": "too_little_history",
        }

        for _day in range(3):
            await ledger.charge("ada", 6 * CREDIT)
            clock.advance(86_400)
        # A spike: 6 + 30 in the last 24 hours (its first instant included) against a mean
        # of 48 / 3 = 16 a day over the 3 days the account has.
        await ledger.charge("ada", 30 * CREDIT)
        answer = body(await api.get("/v1/accounts/ada/runway"))
        assert (answer["available"], answer["burn_per_day"]) == (52, 36)
        assert answer["runway_days"] == Decimal("1.44")  # 52 / 36, rounded down
        runs_out = clock.now + timedelta(seconds=52 * 86_400 // 36)
        assert answer["runs_out_at"] == runs_out.isoformat().replace("+00:00", "Z")
        assert answer["reason"] is None


async def test_an_account_that_burns_nothing_has_no_runway(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("ada", 100 * CREDIT)
    clock.advance(2 * 86_400)
    async with client_for(ledger, await create_key(ledger, "read")) as api:
        answer = body(await api.get("/v1/accounts/ada/runway"))
    assert (answer["burn_per_day"], answer["runway_days"], answer["reason"]) == (0, None, "no_burn")


async def test_an_unknown_account_is_404(ledger: Ledger) -> None:
    async with client_for(ledger, await create_key(ledger, "read")) as api:
        missing = await api.get("/v1/accounts/nobody/runway")
    assert missing.status_code == 404
    assert body(missing)["error"]["code"] == "account_not_found"
