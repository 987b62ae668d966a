"""``/v1/accounts/{id}/auto-topup`` (app): an account's auto top-up rule and state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from creditsd.api.auth import AppKey, LedgerDep, ReadKey, actor
from creditsd.api.checkout import paying_customer
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import IdempotencyHeader, pick_key, respond
from creditsd.api.routes.stripe import BillingDep
from creditsd.api.schemas.autotopup import (
    AutoTopupOut,
    AutoTopupPut,
    CardSessionCreate,
    CardSessionOut,
)
from creditsd.autotopup import service
from creditsd.kit.fields import AccountId

router = APIRouter(prefix="/v1/accounts", route_class=StrictJSONRoute, tags=["auto top-up"])

AccountPath = Annotated[AccountId, Path(description="The account's id or an alias.")]


@router.put(
    "/{account_id}/auto-topup", response_model=AutoTopupOut, responses=error_responses(403, 404)
)
async def put_auto_topup(
    account_id: AccountPath, body: AutoTopupPut, ledger: LedgerDep, key: AppKey
) -> ExactJSONResponse:
    """Set the account's auto top-up rule, audited; ``enabled: false`` turns it off at once.
    It charges nothing until the customer saves a card (``state: awaiting_card``)."""
    rule = body.rule(ledger.money)
    packs = ledger.settings.packs
    topup = await ledger.database.write(
        lambda conn, now: service.put_rule(
            conn, account_id, rule, packs, ledger.policy, now, actor=actor(key)
        )
    )
    return respond(AutoTopupOut.of(topup, ledger.money))


@router.get(
    "/{account_id}/auto-topup", response_model=AutoTopupOut, responses=error_responses(403, 404)
)
async def get_auto_topup(
    account_id: AccountPath, ledger: LedgerDep, _key: ReadKey
) -> ExactJSONResponse:
    """The account's auto top-up: rule, saved card and consent, state, consecutive
    declines, the last attempt and this month's total."""
    topup = await ledger.database.read(
        lambda conn, now: service.get_auto_topup(conn, account_id, now)
    )
    return respond(AutoTopupOut.of(topup, ledger.money))


@router.post(
    "/{account_id}/auto-topup/card-session",
    response_model=CardSessionOut,
    status_code=201,
    responses=error_responses(403, 404, 409, 502),
)
async def create_card_session(
    account_id: AccountPath,
    body: CardSessionCreate,
    ledger: LedgerDep,
    billing: BillingDep,
    key: AppKey,
    idempotency_key: IdempotencyHeader = None,
) -> ExactJSONResponse:
    """Start saving the card auto top-up charges: a Stripe Checkout Session in ``setup``
    mode for the account's customer. Set the rule first (404 ``auto_topup_not_found``
    otherwise): the consent recorded when Stripe reports the saved card names the rule as
    it stands then, the app that asked, and the card's fingerprint and last four. A new card
    replaces the old one and lifts a pause."""
    await ledger.database.read(lambda conn, now: service.get_auto_topup(conn, account_id, now))
    account, customer = await paying_customer(ledger, billing, account_id)
    session = await billing.create_card_session(
        account,
        customer,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        app=key.name,
        idempotency_key=pick_key(idempotency_key, body.idempotency_key),
    )
    return respond(CardSessionOut(id=session.id, account_id=account, url=session.url), 201)
