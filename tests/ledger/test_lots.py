"""Grant lots: which credits a debit spends, when they lapse, and how the balance splits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from creditsd.gateway import service as gateway
from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.ledger import lot_repository
from creditsd.ledger.errors import IdempotencyConflict, InsufficientCredits
from creditsd.ledger.models import EXPIRED
from tests.conftest import Clock, LedgerFactory, body

CREDIT = 10_000
DAY = 86_400


async def test_a_promotion_expiring_tomorrow_is_spent_before_purchased_credits(
    ledger: Ledger, clock: Clock
) -> None:
    bought = await ledger.grant("ada", 1_000 * CREDIT, source="purchase")
    promo = await ledger.grant(
        "ada", 50 * CREDIT, expires_at=clock.now + timedelta(days=1), reason="launch week"
    )

    chat = await ledger.charge("ada", 30 * CREDIT)
    assert [(part.lot_id, part.source, part.amount) for part in chat.lots] == [
        (promo.lots[0].lot_id, "promotion", 30 * CREDIT)
    ]
    canvas = await ledger.charge("ada", 40 * CREDIT)  # 20 left in the promotion, then purchase
    assert {part.lot_id: part.amount for part in canvas.lots} == {
        promo.lots[0].lot_id: 20 * CREDIT,
        bought.lots[0].lot_id: 20 * CREDIT,
    }

    account = await ledger.get_account("ada")
    assert account.by_source == {"purchase": 980 * CREDIT}
    assert (await ledger.get_transfer(canvas.id)).lots == canvas.lots


async def test_an_expired_lot_lapses_by_an_expiry_transfer_and_the_ledger_verifies(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("bo", 100 * CREDIT, source="purchase")
    await ledger.grant("bo", 50 * CREDIT, expires_at=clock.now + timedelta(days=1))
    await ledger.charge("bo", 20 * CREDIT)  # from the promotion: 30 of it left

    clock.advance(DAY + 1)
    assert await ledger.expire_lots() == 1
    assert await ledger.expire_lots() == 0  # nothing twice

    account = await ledger.get_account("bo")
    assert account.balance == 100 * CREDIT
    assert account.by_source == {"purchase": 100 * CREDIT}
    (lapse, *_) = (await ledger.transactions("bo")).items
    assert (lapse.kind, lapse.credit_account_id, lapse.amount) == ("expiry", EXPIRED, 30 * CREDIT)
    assert [part.source for part in lapse.lots] == ["promotion"]
    assert (await ledger.verify_account("bo")).valid
    assert await ledger.ledger_total() == 0


async def test_spending_after_expiry_sweeps_first_without_waiting_for_the_timer(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("cy", 50 * CREDIT, source="purchase")
    await ledger.grant("cy", 100 * CREDIT, expires_at=clock.now + timedelta(hours=1))
    clock.advance(3_601)

    with pytest.raises(InsufficientCredits) as refused:
        await ledger.charge("cy", 80 * CREDIT)
    assert (refused.value.details["required"], refused.value.details["available"]) == (
        80 * CREDIT,
        50 * CREDIT,
    )
    assert (await ledger.get_account("cy")).by_source == {"purchase": 50 * CREDIT}
    await ledger.charge("cy", 50 * CREDIT)
    assert (await ledger.get_account("cy")).balance == 0


async def test_credits_a_hold_reserves_outlive_their_lot_until_it_settles(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("di", 100 * CREDIT, expires_at=clock.now + timedelta(minutes=5))
    await ledger.grant("di", 10 * CREDIT, source="purchase")
    hold = await ledger.open_hold("di", 80 * CREDIT, expires_in=3_600)
    clock.advance(301)

    await ledger.expire_lots()  # 20 of the promotion lapse; the hold keeps 80 of it
    account = await ledger.get_account("di")
    assert (account.balance, account.held, account.available) == (
        90 * CREDIT,
        80 * CREDIT,
        10 * CREDIT,
    )
    assert account.by_source == {"promotion": 80 * CREDIT, "purchase": 10 * CREDIT}
    _hold, capture = await ledger.capture_hold(hold.id, 60 * CREDIT)
    assert [part.source for part in capture.lots] == ["promotion"]
    _hold, replayed = await ledger.capture_hold(hold.id, 60 * CREDIT)
    assert (replayed.replayed, replayed.lots) == (True, capture.lots)

    await ledger.expire_lots()  # the 20 the hold released now lapse
    account = await ledger.get_account("di")
    assert (account.balance, account.by_source) == (10 * CREDIT, {"purchase": 10 * CREDIT})
    assert (await ledger.verify_account("di")).valid


async def test_the_balance_by_source_adds_up_and_transfers_say_paid_or_free(
    make_ledger: LedgerFactory, api: httpx.AsyncClient, ledger: Ledger
) -> None:
    signup = await make_ledger(accounts={"signup_grant": 100})
    await signup.open_account("ed")  # the sign-up grant lands in a lot of its own
    await ledger.grant("ed", 1_000 * CREDIT, source="purchase")
    await ledger.grant("ed", 5 * CREDIT, source="adjustment")

    response = await api.post("/v1/charges", json={"account_id": "ed", "amount": 150})
    assert response.status_code == 201
    charge = body(response)
    assert (charge["paid"], charge["free"]) == (45, 105)
    assert [part["source"] for part in charge["lots"]] == ["signup", "purchase", "adjustment"]

    account = body(await api.get("/v1/accounts/ed"))
    assert account["balance_by_source"] == {"purchase": 955}
    assert account["status"] == "active"
    assert sum(account["balance_by_source"].values()) == account["balance"]


async def test_a_grant_over_http_names_its_source_and_expiry(
    api: httpx.AsyncClient, clock: Clock
) -> None:
    expires_at = (clock.now + timedelta(days=7)).isoformat()
    response = await api.post(
        "/v1/grants",
        json={"account_id": "fay", "amount": 25, "expires_at": expires_at, "reason": "beta"},
    )
    assert response.status_code == 201
    (part,) = body(response)["lots"]
    assert (part["source"], part["amount"]) == ("promotion", 25)
    assert part["expires_at"].startswith(expires_at[:19])

    past = (clock.now - timedelta(seconds=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"expires_at": past}, "expires_at"),
        ({"source": "purchase"}, "source"),  # purchases come from payments, not grants
        ({"priority": -1}, "priority"),
        ({"priority": 1.5}, "priority"),
    ]
    for bad, field in cases:
        refused = await api.post("/v1/grants", json={"account_id": "fay", "amount": 1, **bad})
        assert refused.status_code == 422, bad
        assert field in refused.text


async def test_a_grant_retried_after_its_expiry_answers_what_it_did(
    api: httpx.AsyncClient, clock: Clock
) -> None:
    """A grant whose answer was lost is retried under its key after its lots lapsed: the
    retry answers the first grant, never 422, and grants nothing more."""
    grant = {
        "account_id": "fay",
        "amount": 25,
        "expires_at": (clock.now + timedelta(minutes=5)).isoformat(),
        "reason": "beta",
        "idempotency_key": "beta-fay",
    }
    first = await api.post("/v1/grants", json=grant)
    assert first.status_code == 201
    clock.advance(301)

    again = await api.post("/v1/grants", json=grant)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert body(again)["id"] == body(first)["id"]
    grants = (await api.get("/v1/accounts/fay/transactions")).json()["data"]
    assert [t["kind"] for t in grants].count("grant") == 1


async def test_concurrent_charges_spend_every_lot_exactly_once(ledger: Ledger) -> None:
    for _ in range(5):
        await ledger.grant("gus", 10 * CREDIT)
    await ledger.grant("gus", 10 * CREDIT, source="purchase")

    async def spend() -> bool:
        try:
            await ledger.charge("gus", 3 * CREDIT)
        except InsufficientCredits:
            return False
        return True

    done = await asyncio.gather(*(spend() for _ in range(25)))
    assert sum(done) == 20  # 60 credits, 3 a charge
    account = await ledger.get_account("gus")
    assert (account.balance, account.by_source) == (0, {})
    history = (await ledger.transactions("gus", limit=100)).items
    charges = [t for t in history if t.kind == "charge"]
    assert all(sum(part.amount for part in t.lots) == t.amount for t in charges)


async def test_one_account_that_cannot_lapse_never_stops_the_sweep_of_the_others(
    ledger: Ledger, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import creditsd.inprocess

    for name in ("aa", "bb"):
        await ledger.grant(name, 5 * CREDIT, expires_at=clock.now + timedelta(hours=1))
    clock.advance(3_601)
    lapse = creditsd.inprocess._expire_lots

    async def refused_for_aa(conn: Any, now: Any, *, policy: Any, account_id: str) -> int:
        if account_id == "aa":
            raise IdempotencyConflict("expiry:…")
        return await lapse(conn, now, policy=policy, account_id=account_id)

    monkeypatch.setattr(creditsd.inprocess, "_expire_lots", refused_for_aa)
    assert await ledger.expire_lots() == 1
    assert "the lots of aa could not lapse" in caplog.text
    monkeypatch.undo()
    assert await ledger.expire_lots() == 1  # aa, left for the next sweep
    assert [(await ledger.get_account(name)).balance for name in ("aa", "bb")] == [0, 0]


async def test_an_accounts_live_lots_are_listed_in_spending_order(
    ledger: Ledger, clock: Clock
) -> None:
    bought = await ledger.grant("ada", 10 * CREDIT, source="purchase")
    lasting = await ledger.grant("ada", 5 * CREDIT)
    soon = await ledger.grant("ada", 5 * CREDIT, expires_at=clock.now + timedelta(days=1))
    await ledger.charge("ada", 5 * CREDIT)  # the promotion that lapses first is spent

    async def listed(conn: Any) -> list[Any]:
        return await lot_repository.live_lots(conn, "ada", 10)

    lots = await db.run(ledger.engine, listed, readonly=True)
    assert [(lot.id, lot.remaining) for lot in lots] == [
        (lasting.lots[0].lot_id, 5 * CREDIT),
        (bought.lots[0].lot_id, 10 * CREDIT),
    ]
    assert soon.lots[0].lot_id not in {lot.id for lot in lots}


@pytest.mark.parametrize("debit", ["overdraft", "forced"])
async def test_a_debit_past_the_live_lots_never_spends_what_an_open_hold_keeps_past_expiry(
    ledger: Ledger, clock: Clock, debit: str
) -> None:
    """100 adjustment credits, 50 promotion credits that expire while a hold keeps them,
    and a debit of 150: into the overdraft, or forced (a gateway's usage). The promotion
    is never spent by the debit; once the hold settles it lapses, so the account ends
    where it would have without the hold: at -50."""
    await ledger.adjust("eve", 100 * CREDIT, reason="goodwill")
    promotion = await ledger.grant("eve", 50 * CREDIT, expires_at=clock.now + timedelta(minutes=5))
    if debit == "overdraft":
        await ledger.open_account("eve", overdraft_limit=50 * CREDIT)
    hold = await ledger.open_hold("eve", 50 * CREDIT, expires_in=3_600)
    clock.advance(301)

    if debit == "overdraft":
        spent = await ledger.charge("eve", 150 * CREDIT)
    else:
        recorded = await db.run(
            ledger.engine,
            lambda conn: gateway.record_usage(
                conn,
                gateway.UsagePost(
                    user_id="eve",
                    model="gpt-4o",
                    cost=Decimal(150),
                    gateway_balance_usd=None,
                    payload={},
                    request_id="usage-1",
                ),
                Decimal(1),
                ledger.money,
                ledger.policy,
                ledger.now(),
            ),
        )
        assert recorded.transfer_id is not None
        spent = await ledger.get_transfer(recorded.transfer_id)
    assert promotion.lots[0].lot_id not in {part.lot_id for part in spent.lots}
    assert sum(part.amount for part in spent.lots) == 100 * CREDIT  # the rest is below zero

    await ledger.release_hold(hold.id)
    await ledger.expire_lots()
    account = await ledger.get_account("eve")
    assert (account.balance, account.held) == (-50 * CREDIT, 0)
    assert account.by_source == {"overdrawn": -50 * CREDIT}
    lapsed = [t for t in (await ledger.transactions("eve")).items if t.kind == "expiry"]
    assert [(t.amount, t.lots[0].lot_id) for t in lapsed] == [
        (50 * CREDIT, promotion.lots[0].lot_id)
    ]
    assert (await ledger.verify_account("eve")).valid
    assert await ledger.ledger_total() == 0


async def test_a_credit_pays_back_the_debt_beside_kept_lots_before_it_fills_a_lot(
    ledger: Ledger, clock: Clock
) -> None:
    """A promotion lapses while a hold keeps 6 of it; a charge takes the balance 3 below
    the kept lot, so the next credit of 1 pays back debt and fills no lot: once the hold
    captures the kept 6, the account is 2 below zero with nothing left in any lot."""
    await ledger.open_account("eve", overdraft_limit=50 * CREDIT)
    await ledger.grant("eve", 10 * CREDIT, expires_at=clock.now + timedelta(minutes=5))
    hold = await ledger.open_hold("eve", 6 * CREDIT, expires_in=3_600)
    clock.advance(301)
    await ledger.expire_lots()
    await ledger.charge("eve", 3 * CREDIT)

    await ledger.grant("eve", 1 * CREDIT, reason="goodwill")
    assert await lot_repository_total(ledger, "eve") == 6 * CREDIT  # the kept lot alone
    await ledger.capture_hold(hold.id, 6 * CREDIT)

    account = await ledger.get_account("eve")
    assert (account.balance, account.held) == (-2 * CREDIT, 0)
    assert account.by_source == {"overdrawn": -2 * CREDIT}
    assert await lot_repository_total(ledger, "eve") == 0
    assert (await ledger.verify_account("eve")).valid


async def lot_repository_total(ledger: Ledger, account_id: str) -> int:
    """What the account's lots hold, as stored."""
    remainders = await db.run(
        ledger.engine, lambda conn: lot_repository.remainders(conn, account_id)
    )
    return sum(remainders.values())
