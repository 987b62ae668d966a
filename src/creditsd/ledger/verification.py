"""The stored figures against the history: verifying each account's balance and held
amount against its transfers and open holds, rebuilding them from it, and the ledger's
total. Each operation runs inside a transaction its caller owns; none commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger import repository as repo
from creditsd.ledger.errors import AccountNotFound
from creditsd.ledger.models import Verification, available


async def verify_accounts(conn: AsyncConnection, account_ids: list[str]) -> list[Verification]:
    """Check stored balances and hold totals against the transfers and open holds."""
    if not account_ids:
        return []
    stored = await repo.stored_figures(conn, account_ids)
    balances = await repo.calculated_balances(conn, account_ids)
    held = await repo.open_hold_totals(conn, account_ids)
    return [
        Verification(
            account_id=account_id,
            stored_balance=int(stored[account_id].balance),
            calculated_balance=balances[account_id],
            stored_held=int(stored[account_id].held),
            calculated_held=held[account_id],
        )
        for account_id in account_ids
        if account_id in stored
    ]


async def verify_page(conn: AsyncConnection, after: str | None, size: int) -> list[Verification]:
    """Up to ``size`` customer accounts after ``after`` (in id order), verified."""
    return await verify_accounts(conn, await repo.customer_ids(conn, after, size))


async def rebuild_account(
    conn: AsyncConnection, account_id: str, now: datetime, *, actor: str
) -> Verification:
    """Make every stored figure what the history says, auditing any correction.

    The balance comes from the transfers, ``held`` from the open holds, the debt is what
    ``available`` is then below zero (see :func:`models.debt_after`), each lot's
    remainder is what its credit put in less what debits spent of it, and the next
    expiry is the soonest among the live lots. Returns the verification made before.
    """
    row = await repo.get_account_row(conn, account_id, lock=True)
    if row is None:
        raise AccountNotFound(account_id)
    (verification,) = await verify_accounts(conn, [account_id])
    balance, held = verification.calculated_balance, verification.calculated_held
    lots_before = await lot_repo.remainders(conn, account_id)
    await lot_repo.rebuild_remainders(conn, account_id)
    figures = {
        "balance": balance,
        "held": held,
        "debt": max(0, -available(balance, held, row.overdraft_limit)),
        "lots_expire_at": await lot_repo.soonest_expiry(conn, account_id),
        "lots": await lot_repo.remainders(conn, account_id),
    }
    stored = {name: getattr(row, name) for name in figures if name != "lots"}
    stored["lots"] = lots_before
    if stored != figures:
        await repo.update_account(
            conn, account_id, {k: v for k, v in figures.items() if k != "lots"}, now
        )
        await audit.record(
            conn,
            actor=actor,
            action="account.rebuild",
            target=account_id,
            before=_changed(stored, figures),
            after=_changed(figures, stored),
            now=now,
        )
    return verification


def _changed(these: dict[str, Any], others: dict[str, Any]) -> dict[str, Any]:
    """The balance and held figures, and any other figure that differs, as JSON."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in these.items()
        if name in {"balance", "held"} or others[name] != value
    }


async def ledger_total(conn: AsyncConnection) -> int:
    """Stored customer balances plus derived system balances: zero in a sound ledger."""
    return await repo.stored_customer_total(conn) + sum((await repo.system_balances(conn)).values())
