"""Request and response bodies of the Stripe endpoints. Credits are exact decimals."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from creditsd.config import PackSettings
from creditsd.kit.fields import AccountId, AmountOut, IdempotencyKey, StrictRequest
from creditsd.kit.money import Money
from creditsd.stripe.billing import Checkout

# Kept as written: Stripe fills in a literal {CHECKOUT_SESSION_ID} in these URLs.
WebUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]


class CheckoutCreate(StrictRequest):
    """Sell a credit pack to an account through Stripe Checkout."""

    account_id: AccountId
    pack: str = Field(max_length=40, description="A pack name from [packs.<name>].")
    success_url: WebUrl = Field(
        description="Where Stripe sends the buyer after paying (embedded: the return URL)."
    )
    cancel_url: WebUrl | None = Field(None, description="Where a buyer who gives up goes.")
    ui_mode: Literal["hosted", "embedded"] = Field(
        "hosted", description="hosted: redirect to `url`; embedded: mount with `client_secret`."
    )
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def _hosted_needs_cancel_url(self) -> CheckoutCreate:
        if self.ui_mode == "hosted" and self.cancel_url is None:
            raise ValueError("cancel_url is required when ui_mode is hosted")
        return self


class CheckoutOut(BaseModel):
    """A Checkout Session: redirect to ``url`` (hosted) or mount ``client_secret`` (embedded)."""

    id: str
    account_id: str
    pack: str
    credits: AmountOut
    ui_mode: str
    url: str | None
    client_secret: str | None
    publishable_key: str | None

    @classmethod
    def of(cls, checkout: Checkout, money: Money, publishable_key: str | None) -> CheckoutOut:
        """Render a session in credits."""
        return cls(
            id=checkout.id,
            account_id=checkout.account_id,
            pack=checkout.pack,
            credits=money.to_decimal(checkout.credits),
            ui_mode=checkout.ui_mode,
            url=checkout.url,
            client_secret=checkout.client_secret,
            publishable_key=publishable_key,
        )


class PackOut(BaseModel):
    """A credit pack on sale."""

    name: str
    credits: AmountOut
    label: str | None
    display_price: str | None

    @classmethod
    def of(cls, name: str, pack: PackSettings) -> PackOut:
        """Render a pack from the configuration."""
        return cls(
            name=name, credits=pack.credits, label=pack.label, display_price=pack.display_price
        )


class PackList(BaseModel):
    """Every credit pack on sale."""

    data: list[PackOut]


class WebhookReceipt(BaseModel):
    """A webhook taken in: what it was and what handling it did."""

    received: Literal[True] = True
    event_id: str
    type: str
    outcome: str = Field(description="e.g. granted, clawed_back, ignored; duplicate if seen.")
