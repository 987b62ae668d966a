"""``/v1/holds`` routes: open, capture, extend, release."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from creditsd.api.auth import AppKey, LedgerDep, ReadKey
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import IdempotencyHeader, pick_key, priced, respond
from creditsd.api.schemas.holds import (
    CaptureOut,
    HoldCapture,
    HoldCreate,
    HoldExtend,
    HoldOut,
    HoldRelease,
)
from creditsd.api.schemas.ledger import TransferOut

router = APIRouter(prefix="/v1/holds", route_class=StrictJSONRoute, tags=["holds"])

HoldPath = Annotated[str, Path(max_length=64)]


@router.post(
    "", response_model=HoldOut, status_code=201, responses=error_responses(402, 403, 404, 409)
)
async def open_hold(
    body: HoldCreate, ledger: LedgerDep, key: AppKey, idempotency_key: IdempotencyHeader = None
) -> ExactJSONResponse:
    """Reserve credits: they stop counting in ``available`` until captured, released or expired.

    Give an ``amount``, or a ``feature``/``usage`` whose price is the estimate.
    """
    amount, use = priced(ledger.money, body)
    hold = await ledger.open_hold(
        body.account_id,
        amount,
        use=use,
        expires_in=body.expires_in,
        description=body.description,
        metadata=body.metadata,
        idempotency_key=pick_key(idempotency_key, body.idempotency_key),
        app=key.name,
        member=body.member,
    )
    return respond(HoldOut.of(hold, ledger.money, ledger.now()), 201, replayed=hold.replayed)


@router.get("/{hold_id}", response_model=HoldOut, responses=error_responses(403, 404))
async def get_hold(hold_id: HoldPath, ledger: LedgerDep, _key: ReadKey) -> ExactJSONResponse:
    """One hold."""
    return respond(HoldOut.of(await ledger.get_hold(hold_id), ledger.money, ledger.now()))


@router.post(
    "/{hold_id}/capture",
    response_model=CaptureOut,
    responses=error_responses(402, 403, 404, 409),
)
async def capture_hold(
    hold_id: HoldPath,
    body: HoldCapture,
    ledger: LedgerDep,
    key: AppKey,
    idempotency_key: IdempotencyHeader = None,
) -> ExactJSONResponse:
    """Charge the actual cost against a hold.

    Give an ``amount``, or the actual ``feature``/``usage`` to price. A final capture
    (default) closes the hold and gives back the rest; above the hold it charges the
    difference when the account can afford it, else follows ``[holds] overrun`` (cap and
    record the uncollected rest, or 402). ``"final": false`` takes a slice. A final capture
    without an idempotency key is keyed by the hold, so it never charges twice.
    """
    amount, use = priced(ledger.money, body)
    hold, transfer = await ledger.capture_hold(
        hold_id,
        amount,
        use=use,
        final=body.final,
        description=body.description,
        metadata=body.metadata,
        idempotency_key=pick_key(idempotency_key, body.idempotency_key),
        app=key.name,
    )
    money = ledger.money
    return respond(
        CaptureOut(
            hold=HoldOut.of(hold, money, ledger.now()), transfer=TransferOut.of(transfer, money)
        ),
        replayed=transfer.replayed,
    )


@router.post("/{hold_id}/extend", response_model=HoldOut, responses=error_responses(403, 404, 409))
async def extend_hold(
    hold_id: HoldPath,
    ledger: LedgerDep,
    _key: AppKey,
    _idempotency_key: IdempotencyHeader = None,
    body: Annotated[HoldExtend | None, Body()] = None,
) -> ExactJSONResponse:
    """Push the hold's expiry to ``expires_in`` seconds from now."""
    hold = await ledger.extend_hold(hold_id, None if body is None else body.expires_in)
    return respond(HoldOut.of(hold, ledger.money, ledger.now()))


@router.post("/{hold_id}/release", response_model=HoldOut, responses=error_responses(403, 404, 409))
async def release_hold(
    hold_id: HoldPath,
    ledger: LedgerDep,
    _key: AppKey,
    _idempotency_key: IdempotencyHeader = None,
    _body: Annotated[HoldRelease | None, Body()] = None,
) -> ExactJSONResponse:
    """Give back what the hold reserves; releasing twice is harmless."""
    hold = await ledger.release_hold(hold_id)
    return respond(HoldOut.of(hold, ledger.money, ledger.now()))
