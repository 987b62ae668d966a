"""``/v1/checkout-sessions``, ``/v1/packs`` and the Stripe webhook ``/webhooks/stripe``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from creditsd.api.auth import AppKey, LedgerDep, ReadKey
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import IdempotencyHeader, pick_key, respond
from creditsd.stripe.billing import StripeBilling
from creditsd.stripe.schemas import (
    CheckoutCreate,
    CheckoutOut,
    PackList,
    PackOut,
    WebhookReceipt,
)

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, tags=["stripe"])
webhooks = APIRouter(tags=["webhooks"])


async def get_billing(request: Request) -> StripeBilling:
    """The app's Stripe integration (``async``: a plain ``def`` dependency runs in a thread)."""
    billing: StripeBilling = request.app.state.stripe
    return billing


BillingDep = Annotated[StripeBilling, Depends(get_billing)]


@router.get("/packs", response_model=PackList, responses=error_responses())
async def list_packs(ledger: LedgerDep, _key: ReadKey) -> ExactJSONResponse:
    """The credit packs on sale ([packs.<name>] in the configuration)."""
    packs = sorted(ledger.settings.packs.items())
    return respond(PackList(data=[PackOut.of(name, pack) for name, pack in packs]))


@router.post(
    "/checkout-sessions",
    response_model=CheckoutOut,
    status_code=201,
    responses=error_responses(403, 404, 502),
)
async def create_checkout_session(
    body: CheckoutCreate,
    billing: BillingDep,
    key: AppKey,
    idempotency_key: IdempotencyHeader = None,
) -> ExactJSONResponse:
    """Start buying a credit pack: a Stripe Checkout Session for the account's customer.

    The credits are granted when Stripe's webhook says the payment succeeded, never here.
    The same idempotency key gives back the same session.
    """
    checkout = await billing.create_checkout(
        body.account_id,
        body.pack,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        ui_mode=body.ui_mode,
        app=key.name,
        idempotency_key=pick_key(idempotency_key, body.idempotency_key),
    )
    publishable = billing.settings.publishable_key
    return respond(CheckoutOut.of(checkout, billing.ledger.money, publishable), 201)


@webhooks.post(
    "/webhooks/stripe",
    response_model=WebhookReceipt,
    responses=error_responses(),
)
async def stripe_webhook(
    request: Request,
    billing: BillingDep,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> WebhookReceipt:
    """Stripe events, verified by their ``Stripe-Signature`` before anything is stored.

    Each event is stored once and handled once; repeats answer 200 with ``duplicate``.
    A failure while handling answers 5xx so that Stripe delivers it again.
    """
    receipt = await billing.receive(await request.body(), stripe_signature)
    return WebhookReceipt(event_id=receipt.event_id, type=receipt.type, outcome=receipt.outcome)
