"""Transfers as CSV rows: what ``creditsd export transactions`` and the admin console write.

A text cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return: descriptions, metadata and ids an app chose) is written
with a leading ``'``, so it is read as text: ``=HYPERLINK(…)`` → ``'=HYPERLINK(…)``.
Amounts are numbers and stay as they are. ``member`` is the wallet's member a transfer was
made for (empty when none); it comes last, so the columns before it keep their places.
"""

from __future__ import annotations

from creditsd.kit import jsonio
from creditsd.kit.money import Money
from creditsd.ledger.models import Transfer

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
    "member",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def row(transfer: Transfer, money: Money) -> list[object]:
    """One transfer under :data:`COLUMNS`, its amount in credits."""
    return [
        _text(transfer.id),
        jsonio.format_timestamp(transfer.created_at),
        _text(transfer.kind),
        _text(transfer.debit_account_id),
        _text(transfer.credit_account_id),
        money.to_decimal(transfer.amount),
        _text(transfer.app),
        _text(transfer.idempotency_key),
        _text(transfer.hold_id or ""),
        _text(transfer.description or ""),
        "" if transfer.metadata is None else _text(jsonio.dumps(transfer.metadata)),
        _text(transfer.member_id or ""),
    ]


def _text(cell: str) -> str:
    """A text cell no spreadsheet runs as a formula."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell
