"""What the ledger hands back: accounts, transfers and verification results, in minor units."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from creditsd.kit.ids import ACCOUNT_ID_PATTERN
from creditsd.kit.money import Money
from creditsd.ledger.errors import InvalidAccountId

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
SYSTEM_APP = "creditsd"  # the app name on transfers creditsd makes by itself
# The app names creditsd itself writes under: its own, its integrations' (Stripe, Clerk,
# the gateway), the CLI's and the in-process API's default. No API key may be named one,
# so their idempotency keys live in a namespace no request can reach.
INTERNAL_APPS = frozenset({SYSTEM_APP, "stripe", "clerk", "gateway", "cli", "local"})

Metadata = dict[str, Any]


_ACCOUNT_ID = re.compile(ACCOUNT_ID_PATTERN)


def check_account_id(account_id: str) -> str:
    """Refuse ids that are too long, empty, or carry characters we do not store."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise InvalidAccountId(account_id)
    return account_id


def is_system(account_id: str) -> bool:
    """System accounts are named with a leading ``@``; customers never are."""
    return account_id.startswith(SYSTEM_PREFIX)


def available(balance: int, held: int, overdraft_limit: int) -> int:
    """What an account can still spend or hold: balance − held + overdraft limit."""
    return balance - held + overdraft_limit


def debt_after(debt: int, balance: int, held: int, overdraft_limit: int, forced: bool) -> int:
    """An account's debt once its figures changed to these.

    Debt is what forced debits took past what the account could spend: exactly what
    ``available`` is below zero. Only a forced debit may raise it; anything else that
    lifts ``available`` (a credit, a release) pays it off first. The database's check
    ``balance − held + overdraft_limit + debt ≥ 0`` therefore refuses any other write
    that would overdraw.
    """
    below = max(0, -available(balance, held, overdraft_limit))
    return below if forced else min(debt, below)


@dataclass(frozen=True, slots=True)
class Account:
    """A customer or system account; ``held`` counts only holds that have not expired."""

    id: str
    kind: str
    balance: int
    held: int
    overdraft_limit: int
    metadata: Metadata | None
    created_at: datetime | None  # None: not created yet (see ledger.accounts.unopened_account)
    updated_at: datetime | None
    aliases: tuple[str, ...] = ()
    status: str = "active"
    frozen_by: tuple[str, ...] = ()  # who holds it frozen: operator, dispute:<id>, refund:<id>
    by_source: dict[str, int] = field(default_factory=dict)  # live lots; "overdrawn" below zero
    lots_expire_at: datetime | None = None  # the soonest lapse of a lot nothing holds
    low_balance_threshold: int | None = None  # its own balance.low threshold, if set
    time_zone: str = "UTC"  # the IANA zone its spend limits' days, weeks and months are of

    @property
    def available(self) -> int:
        """What can still be spent or held: balance − held + overdraft limit."""
        return available(self.balance, self.held, self.overdraft_limit)


@dataclass(frozen=True, slots=True)
class LotPart:
    """How much of one lot a transfer moved: spent from it, or put into it."""

    lot_id: str
    source: str
    amount: int
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Lot:
    """Credits that came into an account together: where from, what is left, when they lapse."""

    id: str
    source: str
    amount: int
    remaining: int
    priority: int
    expires_at: datetime | None
    created_at: datetime


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
    proxy_key_id: str | None = None  # the proxy key whose call a capture paid for
    member_id: str | None = None  # the wallet's member it was spent for
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
class DaySpend:
    """What an account spent on one item (a model, feature or meter) in one UTC day."""

    day: date
    item: str
    amount: int


@dataclass(frozen=True, slots=True)
class Expiry:
    """Credits of one source that lapse at one moment unless spent first."""

    expires_at: datetime
    source: str
    amount: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation of ``amount`` on an account until ``expires_at``."""

    id: str
    account_id: str
    amount: int
    captured: int
    status: str
    expires_at: datetime
    app: str
    idempotency_key: str
    description: str | None
    metadata: Metadata | None
    created_at: datetime
    updated_at: datetime
    pricing: Metadata | None = None  # how a priced estimate was computed
    proxy_key_id: str | None = None  # the proxy key that pays for it, within its limit
    member_id: str | None = None  # the wallet's member it is for
    replayed: bool = field(default=False, compare=False)

    def status_at(self, now: datetime) -> str:
        """The status as callers see it: an open hold past its expiry is expired already."""
        if self.status == "open" and self.expires_at <= now:
            return "expired"
        return self.status

    def held_at(self, now: datetime) -> int:
        """What the hold still reserves at ``now``."""
        return self.amount - self.captured if self.status_at(now) == "open" else 0


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
class History:
    """A page of one account's transfers, newest first."""

    account_id: str
    items: list[Transfer]
    next_cursor: str | None


def transfer_view(transfer: Transfer, money: Money, account_id: str | None = None) -> Metadata:
    """A transfer as the API and webhooks show it, from ``account_id``'s side (default: its
    customer side), amounts in credits."""
    side = account_id or transfer.customer_account_id
    paid = sum(part.amount for part in transfer.lots if part.source == PAID_SOURCE)
    balance = transfer.balance_after(side)
    available = transfer.available_after(side)
    return {
        "id": transfer.id,
        "kind": transfer.kind,
        "account_id": side,
        "amount": money.to_decimal(transfer.amount),
        "change": money.to_decimal(transfer.change_for(side)),
        "balance": None if balance is None else money.to_decimal(balance),
        "available": None if available is None else money.to_decimal(available),
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "description": transfer.description,
        "metadata": transfer.metadata,
        "hold_id": transfer.hold_id,
        "app": transfer.app,
        "idempotency_key": transfer.idempotency_key,
        "created_at": transfer.created_at,
        "pricing": transfer.pricing,
        "proxy_key_id": transfer.proxy_key_id,
        "member": transfer.member_id,
        "lots": [
            {
                "lot_id": part.lot_id,
                "source": part.source,
                "amount": money.to_decimal(part.amount),
                "expires_at": part.expires_at,
            }
            for part in transfer.lots
        ],
        "paid": money.to_decimal(paid),
        "free": money.to_decimal(sum(part.amount for part in transfer.lots) - paid),
    }
