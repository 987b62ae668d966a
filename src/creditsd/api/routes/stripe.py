"""``/v1/checkout-sessions``, ``/v1/packs`` and the Stripe webhook ``/webhooks/stripe``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from creditsd.api import receiving
from creditsd.api.auth import AppKey, LedgerDep, ReadKey
from creditsd.api.checkout import paying_customer
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute, bounded_body
from creditsd.api.params import IdempotencyHeader, pick_key, respond
from creditsd.api.schemas.stripe import (
    CheckoutCreate,
    CheckoutOut,
    PackList,
    PackOut,
    WebhookReceipt,
)
from creditsd.stripe.billing import StripeBilling
from creditsd.stripe.errors import LivemodeMismatch
from creditsd.stripe.events import SOURCE

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
    responses=error_responses(403, 404, 409, 502),
)
async def create_checkout_session(
    body: CheckoutCreate,
    ledger: LedgerDep,
    billing: BillingDep,
    key: AppKey,
    idempotency_key: IdempotencyHeader = None,
) -> ExactJSONResponse:
    """Start buying a credit pack: a Stripe Checkout Session for the account's customer.

    The credits are granted when Stripe's webhook says the payment succeeded, never here.
    The same idempotency key gives back the same session. Stripe refusing or failing is
    502 ``payment_provider_error``; Stripe out of reach is 503 with the same code and
    ``Retry-After``.
    """
    billing.pack(body.pack)  # an unknown pack is refused before anything is written
    account_id, customer = await paying_customer(ledger, billing, body.account_id)
    checkout = await billing.create_checkout(
        account_id,
        customer,
        body.pack,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        ui_mode=body.ui_mode,
        app=key.name,
        idempotency_key=pick_key(idempotency_key, body.idempotency_key),
    )
    publishable = billing.settings.publishable_key
    return respond(CheckoutOut.of(checkout, ledger.money, publishable), 201)


@webhooks.post(
    "/webhooks/stripe",
    response_model=WebhookReceipt,
    responses=error_responses(),
)
async def stripe_webhook(
    request: Request,
    ledger: LedgerDep,
    billing: BillingDep,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> WebhookReceipt:
    """Stripe events, verified by their ``Stripe-Signature`` before anything is stored.

    Each event is stored once and handled once; a repeat answers 200 with ``duplicate``
    before anything is asked of Stripe. A signed body that is not an event is 400
    ``invalid_event`` (not stored); an event of the other mode than ``[stripe] secret_key``
    is stored and refused with 400 ``livemode_mismatch``. A failure while handling answers
    5xx so that Stripe delivers it again; the event is kept (its own transaction) either way.
    """
    payload = await bounded_body(request, ledger.settings.server.max_webhook_body_bytes)
    event = billing.verify(payload, stripe_signature)
    event_id, kind = event["id"], event["type"]
    refused = billing.mode_mismatch(event)
    refusal = LivemodeMismatch.code if refused else None
    async with receiving.kept(ledger, SOURCE, event_id, kind, event, refusal=refusal) as delivery:
        if not delivery.duplicate:
            if refused:
                raise LivemodeMismatch(event["livemode"])
            asked = await billing.ask(event)  # asked of Stripe between the two transactions
            delivery.handle(lambda conn, now: billing.handle(conn, event, asked, now))
    return WebhookReceipt(event_id=event_id, type=kind, outcome=delivery.outcome)
