"""The ledger as an app uses it in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from creditsd.inprocess import Ledger
from creditsd.kit.errors import InvalidAmount, InvalidRequest
from creditsd.kit.money import INT64_MAX
from creditsd.ledger.errors import (
    AccountNotFound,
    AliasTaken,
    BalanceLimit,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAccountId,
    OverdraftInUse,
)
from creditsd.ledger.models import ADJUSTMENTS, GRANTS, REVENUE, SIGNUP
from tests.conftest import LedgerFactory, audit_trail

CREDIT = 10_000  # minor units per credit at the default scale


async def test_sign_up_chat_and_canvas_leave_forty(make_ledger: LedgerFactory) -> None:
    ledger = await make_ledger(accounts={"signup_grant": 100})

    first_look = await ledger.get_account("user_2abc")
    assert first_look.balance == 100 * CREDIT

    chat = await ledger.charge("user_2abc", 10 * CREDIT, description="chat_message", app="chat")
    assert (chat.debit_balance_after, chat.debit_available_after) == (90 * CREDIT, 90 * CREDIT)
    canvas = await ledger.charge("user_2abc", 50 * CREDIT, description="canvas", app="canvas")
    assert canvas.debit_balance_after == 40 * CREDIT

    account = await ledger.get_account("user_2abc")
    assert (account.balance, account.held, account.available) == (40 * CREDIT, 0, 40 * CREDIT)
    history = await ledger.transactions("user_2abc")
    assert [(t.kind, t.change_for("user_2abc")) for t in history.items] == [
        ("charge", -50 * CREDIT),
        ("charge", -10 * CREDIT),
        ("grant", 100 * CREDIT),
    ]
    assert [t.app for t in history.items] == ["canvas", "chat", "creditsd"]
    assert (await ledger.verify_account("user_2abc")).valid


async def test_charge_beyond_available_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    await ledger.grant("u", 5 * CREDIT, reason="promo")
    with pytest.raises(InsufficientCredits) as refused:
        await ledger.charge("u", 6 * CREDIT)
    assert (refused.value.required, refused.value.available) == (6 * CREDIT, 5 * CREDIT)
    assert (await ledger.get_account("u")).balance == 5 * CREDIT
    assert len((await ledger.transactions("u")).items) == 1


async def test_every_transfer_is_double_entry_and_the_ledger_sums_to_zero(ledger: Ledger) -> None:
    await ledger.grant("a", 30 * CREDIT)
    await ledger.grant("b", 7 * CREDIT)
    charge = await ledger.charge("a", 12 * CREDIT)
    assert (charge.debit_account_id, charge.credit_account_id) == ("a", REVENUE)
    assert await ledger.ledger_total() == 0
    pages = [page async for page in ledger.verify_all()]
    assert [v.account_id for page in pages for v in page] == ["a", "b"]
    assert all(v.valid for page in pages for v in page)


async def test_replay_returns_the_original_result(ledger: Ledger) -> None:
    await ledger.grant("u", 10 * CREDIT)
    first = await ledger.charge("u", 4 * CREDIT, idempotency_key="order-1")
    await ledger.charge("u", 5 * CREDIT)
    again = await ledger.charge("u", 4 * CREDIT, idempotency_key="order-1")
    assert again.id == first.id
    assert again.replayed and not first.replayed
    assert again.debit_balance_after == 6 * CREDIT  # as first answered, not the balance now
    assert (await ledger.get_account("u")).balance == 1 * CREDIT


async def test_replay_after_the_money_ran_out_still_answers_the_original(ledger: Ledger) -> None:
    await ledger.grant("u", 4 * CREDIT)
    first = await ledger.charge("u", 4 * CREDIT, idempotency_key="k")
    again = await ledger.charge("u", 4 * CREDIT, idempotency_key="k")
    assert again.id == first.id


async def test_same_key_with_another_request_is_a_conflict(ledger: Ledger) -> None:
    await ledger.grant("u", 10 * CREDIT)
    await ledger.charge("u", 4 * CREDIT, idempotency_key="k", description="chat")
    for changed in (
        {"amount": 5 * CREDIT},
        {"description": "image"},
        {"metadata": {"model": "x"}},
    ):
        arguments = {"amount": 4 * CREDIT, "description": "chat", **changed}
        with pytest.raises(IdempotencyConflict):
            await ledger.charge("u", idempotency_key="k", **arguments)  # type: ignore[arg-type]
    with pytest.raises(IdempotencyConflict):
        await ledger.charge("other", 4 * CREDIT, idempotency_key="k", description="chat")
    assert (await ledger.get_account("u")).balance == 6 * CREDIT


async def test_keys_are_scoped_per_app(ledger: Ledger) -> None:
    await ledger.grant("u", 10 * CREDIT)
    chat = await ledger.charge("u", 1 * CREDIT, idempotency_key="1", app="chat")
    canvas = await ledger.charge("u", 2 * CREDIT, idempotency_key="1", app="canvas")
    assert chat.id != canvas.id
    assert (await ledger.get_account("u")).balance == 7 * CREDIT


async def test_sign_up_grant_comes_once_however_the_account_first_appears(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(accounts={"signup_grant": 100})
    await ledger.charge("by-charge", 1 * CREDIT)
    await ledger.open_hold("by-hold", 1 * CREDIT)
    await ledger.get_account("by-read")
    await ledger.open_account("by-put")
    await ledger.grant("by-grant", 1 * CREDIT)
    for account_id in ("by-charge", "by-hold", "by-read", "by-put", "by-grant"):
        await ledger.get_account(account_id)
        await ledger.open_account(account_id)
        history = await ledger.transactions(account_id)
        signups = [t for t in history.items if t.debit_account_id == SIGNUP]
        assert len(signups) == 1, account_id
        assert signups[0].amount == 100 * CREDIT


async def test_without_auto_create_an_unknown_account_is_not_found(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(accounts={"auto_create": "false"})
    for attempt in (
        ledger.get_account("ghost"),
        ledger.charge("ghost", 1),
        ledger.grant("ghost", 1),
        ledger.open_hold("ghost", 1),
        ledger.transactions("ghost"),
    ):
        with pytest.raises(AccountNotFound):
            await attempt
    account, created = await ledger.open_account("ghost")
    assert created and account.balance == 0


async def test_aliases_reach_one_balance(ledger: Ledger) -> None:
    account, created = await ledger.open_account("user_2abc", aliases=("123",))
    assert created and account.aliases == ("123",)
    await ledger.grant("123", 10 * CREDIT)
    charge = await ledger.charge("user_2abc", 3 * CREDIT)
    assert charge.debit_account_id == "user_2abc"
    via_alias = await ledger.get_account("123")
    assert (via_alias.id, via_alias.balance) == ("user_2abc", 7 * CREDIT)
    assert (await ledger.transactions("123")).account_id == "user_2abc"
    with pytest.raises(AliasTaken):
        await ledger.open_account("someone-else", aliases=("123",))
    with pytest.raises(AliasTaken):
        await ledger.open_account("other", aliases=("user_2abc",))


async def test_put_applies_settings_but_grants_only_on_creation(ledger: Ledger) -> None:
    account, created = await ledger.open_account(
        "u", initial_grant=50 * CREDIT, metadata={"plan": "pro"}
    )
    assert created and account.balance == 50 * CREDIT
    again, created = await ledger.open_account(
        "u", initial_grant=50 * CREDIT, metadata={"plan": "team"}
    )
    assert not created
    assert again.balance == 50 * CREDIT
    assert again.metadata == {"plan": "team"}


async def test_overdraft_lets_balance_go_negative_up_to_the_limit(ledger: Ledger) -> None:
    await ledger.open_account("u", overdraft_limit=5 * CREDIT)
    await ledger.grant("u", 2 * CREDIT)
    charge = await ledger.charge("u", 7 * CREDIT)
    assert (charge.debit_balance_after, charge.debit_available_after) == (-5 * CREDIT, 0)
    with pytest.raises(InsufficientCredits):
        await ledger.charge("u", 1)
    with pytest.raises(OverdraftInUse):
        await ledger.open_account("u", overdraft_limit=4 * CREDIT)
    assert (await ledger.get_account("u")).overdraft_limit == 5 * CREDIT


async def test_balances_stop_at_the_64_bit_limit(ledger: Ledger) -> None:
    await ledger.grant("u", INT64_MAX)
    with pytest.raises(BalanceLimit):
        await ledger.grant("u", 1)
    assert (await ledger.get_account("u")).balance == INT64_MAX


@pytest.mark.parametrize("amount", [0, -1, True, 1.5, "10", INT64_MAX + 1])
async def test_in_process_amounts_must_be_positive_ints(ledger: Ledger, amount: object) -> None:
    with pytest.raises(InvalidAmount):
        await ledger.charge("u", amount)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        await ledger.grant("u", amount)  # type: ignore[arg-type]


@pytest.mark.parametrize("account_id", ["", "x" * 129, "@revenue", "a b", "é", "a/b", "a\x00"])
async def test_odd_account_ids_are_refused(ledger: Ledger, account_id: str) -> None:
    with pytest.raises((InvalidAccountId, AccountNotFound)):
        await ledger.grant(account_id, 1)
    with pytest.raises((InvalidAccountId, AccountNotFound)):
        await ledger.open_account(account_id)


async def test_drift_is_found_and_rebuilt_with_an_audit_record(ledger: Ledger) -> None:
    from sqlalchemy import text

    from creditsd.kit import db
    from tests.conftest import audit_trail

    await ledger.grant("u", 10 * CREDIT)
    await ledger.charge("u", 3 * CREDIT)
    async with db.transaction(ledger.engine) as conn:
        await conn.execute(text("UPDATE accounts SET balance = balance + 5 WHERE id = 'u'"))
    drifted = await ledger.verify_account("u")
    assert not drifted.valid
    assert (drifted.stored_balance, drifted.calculated_balance) == (7 * CREDIT + 5, 7 * CREDIT)
    assert await ledger.ledger_total() == 5

    before = await ledger.rebuild_account("u", actor="ops")
    assert before == drifted
    assert (await ledger.verify_account("u")).valid
    assert await ledger.ledger_total() == 0
    async with db.transaction(ledger.engine) as conn:
        trail = await audit_trail(conn, "u")
    rebuild = [r for r in trail if r.action == "account.rebuild"]
    assert len(rebuild) == 1
    assert rebuild[0].actor == "ops"
    assert rebuild[0].before == {"balance": 7 * CREDIT + 5, "held": 0}
    assert rebuild[0].after == {"balance": 7 * CREDIT, "held": 0}


async def test_grants_are_audited_in_the_same_transaction(ledger: Ledger) -> None:
    from creditsd.kit import db
    from tests.conftest import audit_trail

    transfer = await ledger.grant("u", 10 * CREDIT, reason="support", actor="alice")
    await ledger.grant("u", 10 * CREDIT, reason="support", actor="alice", idempotency_key="g")
    await ledger.grant("u", 10 * CREDIT, reason="support", actor="alice", idempotency_key="g")
    assert transfer.debit_account_id == GRANTS
    async with db.transaction(ledger.engine) as conn:
        trail = await audit_trail(conn, "u")
    assert [(r.actor, r.action) for r in trail] == [("alice", "grant"), ("alice", "grant")]
    assert trail[0].after == {"balance": 10 * CREDIT, "transfer_id": transfer.id}


async def test_history_pages_with_an_opaque_cursor(ledger: Ledger) -> None:
    await ledger.grant("u", 100 * CREDIT)
    for _ in range(7):
        await ledger.charge("u", 1 * CREDIT)
    seen = []
    cursor = None
    while True:
        page = await ledger.transactions("u", limit=3, cursor=cursor)
        seen.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 8
    assert [t.id for t in seen] == sorted((t.id for t in seen), reverse=True)
    assert len({t.id for t in seen}) == 8


async def test_scale_is_fixed_once_a_database_has_data(make_ledger: LedgerFactory) -> None:
    from creditsd.config import ConfigError

    await make_ledger()
    with pytest.raises(ConfigError, match="scale"):
        await make_ledger(ledger={"scale": 2})


async def test_adjustments_correct_a_balance_both_ways_with_their_reason(ledger: Ledger) -> None:
    await ledger.grant("kim", 10 * CREDIT)
    up = await ledger.adjust("kim", 3 * CREDIT, reason="missed top-up", actor="cli:ops")
    await ledger.set_status("kim", "frozen", reason="dispute", actor="cli:ops")
    down = await ledger.adjust("kim", -5 * CREDIT, reason="double credit", actor="cli:ops")
    assert (up.kind, up.debit_account_id, up.description) == (
        "adjustment",
        ADJUSTMENTS,
        "missed top-up",
    )
    assert (down.debit_account_id, down.credit_account_id) == ("kim", ADJUSTMENTS)
    assert down.debit_balance_after == 8 * CREDIT  # an operator's debit goes on while frozen
    with pytest.raises(InsufficientCredits):
        await ledger.adjust("kim", -9 * CREDIT, reason="too much")
    with pytest.raises(InvalidRequest):
        await ledger.adjust("kim", CREDIT, reason="  ")
    with pytest.raises(InvalidAmount):
        await ledger.adjust("kim", 0, reason="nothing")
    assert await ledger.ledger_total() == 0
    async with ledger.engine.connect() as conn:
        trail = [(r.action, r.actor, r.after.get("reason")) for r in await audit_trail(conn, "kim")]
    assert trail[1:] == [
        ("adjustment", "cli:ops", "missed top-up"),
        ("account.frozen", "cli:ops", "dispute"),
        ("adjustment", "cli:ops", "double credit"),
    ]


async def test_setting_a_status_twice_changes_it_once(ledger: Ledger) -> None:
    await ledger.open_account("lee")
    assert await ledger.set_status("lee", "closed") is True
    assert await ledger.set_status("lee", "closed") is False
    with pytest.raises(InvalidRequest):
        await ledger.set_status("lee", "gone")
    with pytest.raises(AccountNotFound):
        await ledger.set_status("nobody", "frozen")
