"""Request and response bodies of the ledger endpoints. Amounts are credits, exact."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from creditsd.api.schemas.pricing import PricedRequest
from creditsd.kit.fields import (
    AccountId,
    AmountIn,
    AmountOut,
    IdempotencyKey,
    Instant,
    Metadata,
    SettingIn,
    StrictRequest,
    Text,
    TimeZoneName,
    WholeNumber,
)
from creditsd.kit.money import Money, plain
from creditsd.ledger.models import Account, Transfer, Verification, transfer_view
from creditsd.ledger.runway import Reason, Runway


class AccountPut(StrictRequest):
    """Open an account (or update the settings given). Grants, overdrafts, status and
    aliases need an admin key."""

    initial_grant: SettingIn | None = Field(None, description="Credits granted only on creation.")
    overdraft_limit: SettingIn | None = Field(
        None, description="How far below zero the balance may go (credits)."
    )
    aliases: list[AccountId] = Field(default_factory=list, max_length=20)
    metadata: Metadata | None = None
    status: Literal["active", "frozen", "closed"] | None = Field(
        None, description="Freeze, close or reactivate the account (audited)."
    )
    low_balance_threshold: SettingIn | None = Field(
        None,
        description="balance.low fires when a debit takes the balance below this (credits); "
        "0: never for this account. Unset: the [webhooks] default.",
    )
    time_zone: TimeZoneName | None = Field(
        None,
        description="The zone whose days, weeks (from Monday) and months its spend limits "
        "count in (audited); null: UTC; left out: unchanged. A window in progress keeps "
        "what it spent and ends at the new zone's next boundary.",
    )


class GrantCreate(StrictRequest):
    """Give credits to an account, into a lot of their own."""

    account_id: AccountId
    amount: AmountIn
    source: Literal["promotion", "adjustment"] = Field(
        "promotion", description="Where the credits come from; both are free credits."
    )
    expires_at: Instant | None = Field(
        None, description="When what is left of them lapses (to @expired). None: never."
    )
    priority: Annotated[int, Field(ge=0, le=1000), WholeNumber] | None = Field(
        None,
        description="Lower is spent first; default 10 for promotions, 40 for adjustments "
        "(purchases 50).",
    )
    reason: Text | None = None
    metadata: Metadata | None = None
    idempotency_key: IdempotencyKey | None = None


class ChargeCreate(PricedRequest):
    """Spend credits: an ``amount``, or what the catalog says a ``feature`` or ``usage`` costs."""

    account_id: AccountId
    member: AccountId | None = Field(
        None, description="The wallet's member it is spent for: counted against its limits."
    )
    description: Text | None = None
    metadata: Metadata | None = None
    idempotency_key: IdempotencyKey | None = None


class AccountOut(BaseModel):
    """An account; ``available`` = ``balance`` − ``held`` + ``overdraft_limit``."""

    id: str
    balance: AmountOut
    held: AmountOut
    available: AmountOut
    overdraft_limit: AmountOut
    status: str = Field(
        description="active, frozen or closed: frozen and closed accounts spend nothing; "
        "their history is kept."
    )
    frozen_by: list[str] = Field(
        description="Who holds the account frozen, each lifting only its own freeze: "
        '`operator`, `dispute:<Stripe dispute id>` (`[stripe] dispute_policy = "freeze"`, '
        "or spent credits it could not take back), `refund:<Stripe payment id>` (spent "
        'credits a refund could not take back, `refund_policy = "block_account"`). The '
        "account is active again once none is left; an operator's reactivation lifts them "
        "all. Empty when active."
    )
    balance_by_source: dict[str, AmountOut] = Field(
        description="The balance split by where its credits came from (purchase, subscription, "
        "signup, promotion, adjustment); `overdrawn` is what the balance is below zero. "
        "The parts add up to `balance`."
    )
    low_balance_threshold: AmountOut | None = Field(
        description="Its own balance.low threshold (credits); null: the deployment's."
    )
    time_zone: str = Field(
        description="The IANA time zone whose days, weeks and months its spend limits "
        "count in; UTC unless set."
    )
    aliases: list[str]
    metadata: Metadata | None
    created_at: datetime | None = Field(
        description="null: the account does not exist yet. Reads never create accounts; "
        "this is the account its first write will create (with the sign-up grant)."
    )
    updated_at: datetime | None

    @classmethod
    def of(cls, account: Account, money: Money) -> AccountOut:
        """Render an account in credits."""
        return cls(
            id=account.id,
            balance=money.to_decimal(account.balance),
            held=money.to_decimal(account.held),
            available=money.to_decimal(account.available),
            overdraft_limit=money.to_decimal(account.overdraft_limit),
            status=account.status,
            frozen_by=list(account.frozen_by),
            balance_by_source={
                source: money.to_decimal(amount) for source, amount in account.by_source.items()
            },
            low_balance_threshold=None
            if account.low_balance_threshold is None
            else money.to_decimal(account.low_balance_threshold),
            time_zone=account.time_zone,
            aliases=list(account.aliases),
            metadata=account.metadata,
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class LotPartOut(BaseModel):
    """The part of one grant lot a transfer spent (a debit) or filled (a credit)."""

    lot_id: str
    source: str
    amount: AmountOut
    expires_at: datetime | None


class TransferOut(BaseModel):
    """A transfer seen from one customer account (``account_id``)."""

    id: str
    kind: str
    account_id: str
    amount: AmountOut = Field(description="Always positive: what moved.")
    change: AmountOut = Field(description="The signed effect on account_id.")
    balance: AmountOut | None = Field(description="account_id's balance right after.")
    available: AmountOut | None = Field(description="account_id's available right after.")
    debit_account_id: str
    credit_account_id: str
    description: str | None
    metadata: Metadata | None
    hold_id: str | None
    app: str
    idempotency_key: str
    created_at: datetime
    pricing: dict[str, Any] | None = Field(
        description="How a priced amount was computed (catalog version, lines, unit prices, "
        "markup, rounding), and for a capture how it settled against its hold."
    )
    proxy_key_id: str | None = Field(
        description="The proxy key whose call this capture settled (None for every other)."
    )
    member: str | None = Field(description="The wallet's member it was spent for, if any.")
    lots: list[LotPartOut] = Field(
        description="The lots a debit spent (oldest lot first), or the lot a credit filled."
    )
    paid: AmountOut = Field(description="How much of `lots` is purchased credit.")
    free: AmountOut = Field(description="How much of `lots` is free credit (every other source).")

    @classmethod
    def of(cls, transfer: Transfer, money: Money, account_id: str | None = None) -> TransferOut:
        """Render a transfer from ``account_id``'s side (default: its customer side)."""
        return cls(**transfer_view(transfer, money, account_id))


class VerificationOut(BaseModel):
    """A stored balance checked against the sum of the account's transfers."""

    account_id: str
    valid: bool
    stored: AmountOut
    calculated: AmountOut
    stored_held: AmountOut
    calculated_held: AmountOut

    @classmethod
    def of(cls, verification: Verification, money: Money) -> VerificationOut:
        """Render a verification in credits."""
        return cls(
            account_id=verification.account_id,
            valid=verification.valid,
            stored=money.to_decimal(verification.stored_balance),
            calculated=money.to_decimal(verification.calculated_balance),
            stored_held=money.to_decimal(verification.stored_held),
            calculated_held=money.to_decimal(verification.calculated_held),
        )


class AccountPage(BaseModel):
    """A page of accounts."""

    data: list[AccountOut]
    next_cursor: str | None


class TransferPage(BaseModel):
    """A page of transfers, newest first."""

    data: list[TransferOut]
    next_cursor: str | None


class RunwayOut(BaseModel):
    """How long an account's credits last at the rate it spends them."""

    available: AmountOut = Field(
        description="What the runway divides (credits): available credits without the unspent "
        "allowance of a subscription plan, which lapses at its period's end."
    )
    burn_per_day: AmountOut | None = Field(
        description="Credits spent per day by `method`; spend the allowance paid for is left "
        "out. null: less than a day of history."
    )
    method: str = Field(description="How `burn_per_day` is worked out.")
    runway_days: Decimal | None = Field(
        description="Days `available` lasts at `burn_per_day`, rounded down to 0.01. null: "
        "no runway to tell (see `reason`)."
    )
    runs_out_at: datetime | None = Field(
        description="When `available` runs out at `burn_per_day`; null with `runway_days`."
    )
    reason: Reason | None = Field(
        description="Why there is no runway: `too_little_history` (the account is less than "
        "24 hours old) or `no_burn` (it spent none of its own credits in the last 7 days). "
        "null when there is one."
    )

    @classmethod
    def of(cls, runway: Runway, money: Money) -> RunwayOut:
        """Render a runway in credits and days."""
        return cls(
            available=money.to_decimal(runway.available),
            burn_per_day=None
            if runway.burn_per_day is None
            else money.to_decimal(runway.burn_per_day),
            method=runway.method,
            runway_days=None if runway.days is None else plain(runway.days),
            runs_out_at=runway.runs_out_at,
            reason=runway.reason,
        )
