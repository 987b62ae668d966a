"""What the ledger hands back: accounts, transfers and verification results, in minor units."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")

SYSTEM_PREFIX = "@"

# The system accounts every deployment has; their balances are derived from transfers.
REVENUE = "@revenue"
GRANTS = "@grants"
SIGNUP = "@signup"
ADJUSTMENTS = "@adjustments"
EXPIRED = "@expired"
STRIPE = "@stripe"
SUBSCRIPTIONS = "@subscriptions"
GATEWAY = "@gateway"
SYSTEM_ACCOUNTS = (REVENUE, GRANTS, SIGNUP, ADJUSTMENTS, EXPIRED, STRIPE, SUBSCRIPTIONS, GATEWAY)

PAID_SOURCE = "purchase"  # credits bought; every other source is free credit

Metadata = dict[str, Any]


def is_system(account_id: str) -> bool:
    """System accounts are named with a leading ``@``; customers never are."""
    return account_id.startswith(SYSTEM_PREFIX)


@dataclass(frozen=True, slots=True)
class Account:
    """A customer or system account; ``held`` counts only holds that have not expired."""

    id: str
    kind: str
    balance: int
    held: int
    overdraft_limit: int
    metadata: Metadata | None
    created_at: datetime
    updated_at: datetime
    aliases: tuple[str, ...] = ()
    status: str = "active"
    by_source: dict[str, int] = field(default_factory=dict)  # live lots; "overdrawn" below zero
    lots_expire_at: datetime | None = None  # the soonest lapse of a lot nothing holds
    low_balance_threshold: int | None = None  # its own balance.low threshold, if set

    @property
    def available(self) -> int:
        """What can still be spent or held: balance − held + overdraft limit."""
        return self.balance - self.held + self.overdraft_limit


@dataclass(frozen=True, slots=True)
class LotPart:
    """How much of one lot a transfer moved: spent from it, or put into it."""

    lot_id: str
    source: str
    amount: int
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """One immutable movement of ``amount`` from the debit account to the credit account."""

    id: str
    kind: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    app: str
    idempotency_key: str
    hold_id: str | None
    description: str | None
    metadata: Metadata | None
    debit_balance_after: int | None
    debit_available_after: int | None
    credit_balance_after: int | None
    credit_available_after: int | None
    created_at: datetime
    pricing: Metadata | None = None  # the price stamp: how a priced amount was computed
    lots: tuple[LotPart, ...] = ()  # the lots a debit spent, or the lot a credit filled
    replayed: bool = field(default=False, compare=False)

    @property
    def customer_account_id(self) -> str:
        """The customer side: the debit side when both are customers."""
        return self.credit_account_id if is_system(self.debit_account_id) else self.debit_account_id

    def change_for(self, account_id: str) -> int:
        """The signed effect on ``account_id``: negative when it paid."""
        return -self.amount if account_id == self.debit_account_id else self.amount

    def balance_after(self, account_id: str) -> int | None:
        """The account's balance right after this transfer (customer accounts only)."""
        if account_id == self.debit_account_id:
            return self.debit_balance_after
        return self.credit_balance_after

    def available_after(self, account_id: str) -> int | None:
        """The account's available credits right after this transfer (customer accounts only)."""
        if account_id == self.debit_account_id:
            return self.debit_available_after
        return self.credit_available_after


@dataclass(frozen=True, slots=True)
class ExpiredHold:
    """A hold the sweeper closed, and what it gave back."""

    hold_id: str
    account_id: str
    released: int


@dataclass(frozen=True, slots=True)
class Verification:
    """A stored balance (and hold total) checked against the transfers (and open holds)."""

    account_id: str
    stored_balance: int
    calculated_balance: int
    stored_held: int
    calculated_held: int

    @property
    def valid(self) -> bool:
        """True when the stored figures equal what the history says."""
        return (
            self.stored_balance == self.calculated_balance
            and self.stored_held == self.calculated_held
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the cursor for the next, if any."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class History:
    """A page of one account's transfers, newest first."""

    account_id: str
    items: list[Transfer]
    next_cursor: str | None
