"""Request and response bodies of an account's auto top-up."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from creditsd.api.params import units
from creditsd.api.schemas.stripe import WebUrl
from creditsd.autotopup.models import AutoTopup, Rule
from creditsd.kit.fields import AmountIn, AmountOut, IdempotencyKey, SettingIn, StrictRequest
from creditsd.kit.money import Money

PackName = Annotated[str, Field(min_length=1, max_length=64)]


class AutoTopupPut(StrictRequest):
    """The rule: when ``available`` falls below ``threshold``, buy enough to reach
    ``target_balance``, or one ``pack`` (give exactly one), never more than ``monthly_cap``
    credits in a calendar month (UTC)."""

    enabled: bool = Field(description="false turns auto top-up off at once.")
    threshold: SettingIn = Field(description="Top up when available falls below this (credits).")
    target_balance: AmountIn | None = Field(
        None, description="Buy enough to bring available to this (credits); above threshold."
    )
    pack: PackName | None = Field(None, description="Buy one of this credit pack ([packs]).")
    monthly_cap: AmountIn = Field(description="At most this many credits a calendar month.")

    def rule(self, money: Money) -> Rule:
        """The rule in minor units; 422 naming a field that is not exact at the scale."""
        target = self.target_balance
        return Rule(
            enabled=self.enabled,
            threshold=units(money, self.threshold, "threshold", allow_zero=True),
            target_balance=None if target is None else units(money, target, "target_balance"),
            pack=self.pack,
            monthly_cap=units(money, self.monthly_cap, "monthly_cap"),
        )


class CardOut(BaseModel):
    """The saved card auto top-up charges, and the consent behind it."""

    payment_method_id: str
    brand: str | None
    last4: str | None
    fingerprint: str | None
    consented_by: str = Field(description="Who agreed: the API key or page that saved it.")
    consented_at: datetime
    consented_rule: dict[str, Any] = Field(description="The rule as it stood (minor units).")


class AttemptOut(BaseModel):
    """The latest attempt to charge the card."""

    id: str
    status: Literal["queued", "processing", "succeeded", "declined", "needs_action", "canceled"]
    credits: AmountOut
    payment_intent_id: str | None
    decline_code: str | None
    created_at: datetime
    updated_at: datetime


class AutoTopupOut(BaseModel):
    """An account's auto top-up: its rule, card and where it stands."""

    account_id: str
    enabled: bool
    threshold: AmountOut
    target_balance: AmountOut | None
    pack: str | None
    monthly_cap: AmountOut
    state: Literal["off", "awaiting_card", "active", "paused", "needs_action"] = Field(
        description="off; awaiting_card (on, no card saved yet); active; paused (declines: "
        "see paused_reason; a new card or a manual purchase resumes it); needs_action (the "
        "bank asks the customer to authenticate)."
    )
    paused_reason: str | None
    consecutive_declines: int
    next_attempt_at: datetime | None = Field(description="No attempt before this (backoff).")
    card: CardOut | None
    last_attempt: AttemptOut | None
    month_total: AmountOut = Field(description="Credits bought or being bought this month.")

    @classmethod
    def of(cls, topup: AutoTopup, money: Money) -> AutoTopupOut:
        """Render an auto top-up, amounts in credits."""
        rule, consent, last = topup.rule, topup.consent, topup.last_attempt

        def credits(value: int | None) -> Decimal | None:
            return None if value is None else money.to_decimal(value)

        card = None
        if consent is not None:
            card = CardOut(
                payment_method_id=consent.card.payment_method_id,
                brand=consent.card.brand,
                last4=consent.card.last4,
                fingerprint=consent.card.fingerprint,
                consented_by=consent.by,
                consented_at=consent.at,
                consented_rule=consent.rule,
            )
        attempt = None
        if last is not None:
            attempt = AttemptOut(
                id=last.id,
                status=last.status,
                credits=money.to_decimal(last.credits),
                payment_intent_id=last.payment_intent_id,
                decline_code=last.decline_code,
                created_at=last.created_at,
                updated_at=last.updated_at,
            )
        return cls(
            account_id=topup.account_id,
            enabled=rule.enabled,
            threshold=money.to_decimal(rule.threshold),
            target_balance=credits(rule.target_balance),
            pack=rule.pack,
            monthly_cap=money.to_decimal(rule.monthly_cap),
            state=topup.state,
            paused_reason=topup.paused_reason,
            consecutive_declines=topup.consecutive_declines,
            next_attempt_at=topup.next_attempt_at,
            card=card,
            last_attempt=attempt,
            month_total=money.to_decimal(topup.month_total),
        )


class CardSessionCreate(StrictRequest):
    """Start saving the card auto top-up charges: a hosted Stripe Checkout in setup mode."""

    success_url: WebUrl = Field(description="Where Stripe sends the customer after saving.")
    cancel_url: WebUrl = Field(description="Where a customer who gives up goes.")
    idempotency_key: IdempotencyKey | None = None


class CardSessionOut(BaseModel):
    """A setup-mode Checkout Session: send the customer to ``url``. The card counts once
    Stripe's ``checkout.session.completed`` arrives (the GET then shows it)."""

    id: str
    account_id: str
    url: str | None
