"""Transfers as CSV rows: what ``creditsd export transactions`` and the admin console write."""

from __future__ import annotations

from creditsd import jsonio
from creditsd.ledger.models import Transfer
from creditsd.money import Money

COLUMNS = [
    "id",
    "created_at",
    "kind",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "app",
    "idempotency_key",
    "hold_id",
    "description",
    "metadata",
]


def row(transfer: Transfer, money: Money) -> list[object]:
    """One transfer under :data:`COLUMNS`, its amount in credits."""
    return [
        transfer.id,
        jsonio.format_timestamp(transfer.created_at),
        transfer.kind,
        transfer.debit_account_id,
        transfer.credit_account_id,
        money.to_decimal(transfer.amount),
        transfer.app,
        transfer.idempotency_key,
        transfer.hold_id or "",
        transfer.description or "",
        "" if transfer.metadata is None else jsonio.dumps(transfer.metadata),
    ]
