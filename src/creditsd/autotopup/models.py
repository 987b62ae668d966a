"""An account's auto top-up rule, the card it charges, and where it stands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

ACTOR = "creditsd auto top-up"  # who the audit log says changed a top-up's state
State = Literal["off", "awaiting_card", "active", "paused", "needs_action"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """When ``available`` falls below ``threshold``, buy up to ``target_balance`` or one
    ``pack`` (exactly one is set), never more than ``monthly_cap`` credits in a calendar
    month (UTC). Amounts in minor units of credits."""

    enabled: bool
    threshold: int
    target_balance: int | None
    pack: str | None
    monthly_cap: int

    def stored(self) -> dict[str, Any]:
        """The rule as its columns (and as its audit records show it)."""
        return {
            "enabled": self.enabled,
            "threshold": self.threshold,
            "target_balance": self.target_balance,
            "pack": self.pack,
            "monthly_cap": self.monthly_cap,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    """A saved payment method the customer agreed auto top-up may charge."""

    customer_id: str
    payment_method_id: str
    fingerprint: str | None
    last4: str | None
    brand: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    """Who agreed to which rule, when, with which card."""

    card: Card
    by: str
    at: datetime
    rule: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """The latest try to charge the card."""

    id: str
    status: str
    credits: int
    payment_intent_id: str | None
    decline_code: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoTopup:
    """An account's auto top-up as the API shows it."""

    account_id: str
    rule: Rule
    state: State
    paused_reason: str | None
    consecutive_declines: int
    next_attempt_at: datetime | None
    consent: Consent | None
    last_attempt: Attempt | None
    month_total: int  # credits bought (or being bought) this calendar month
