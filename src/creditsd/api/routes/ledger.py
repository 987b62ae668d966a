"""``/v1`` routes for accounts, grants, charges and transactions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from creditsd.api.auth import AdminKey, AppKey, LedgerDep, ReadKey, actor, ensure_scope
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import (
    Cursor,
    IdempotencyHeader,
    Limit,
    pick_key,
    priced,
    respond,
    units,
)
from creditsd.api.schemas.ledger import (
    AccountOut,
    AccountPage,
    AccountPut,
    ChargeCreate,
    GrantCreate,
    RunwayOut,
    TransferOut,
    TransferPage,
    VerificationOut,
)
from creditsd.kit.fields import AccountId, NoNul

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, tags=["ledger"])

AccountPath = Annotated[AccountId, Path(description="The account's id or one of its aliases.")]


@router.put(
    "/accounts/{account_id}",
    response_model=AccountOut,
    status_code=201,
    responses={
        200: {"model": AccountOut, "description": "Already existed"},
        **error_responses(403, 409),
    },
)
async def put_account(
    account_id: AccountPath,
    ledger: LedgerDep,
    key: AppKey,
    _idempotency_key: IdempotencyHeader = None,
    body: Annotated[AccountPut | None, Body()] = None,
) -> ExactJSONResponse:
    """Create the account if absent (201) or return it (200), applying the settings sent.

    ``initial_grant`` is paid only when the account is created. Setting
    ``initial_grant``, ``overdraft_limit``, ``status`` or ``aliases`` needs an admin key
    (an alias redirects every request that names it). ``time_zone`` (null: UTC) is the
    zone its spend limits count in, which whoever manages its limits may set.
    """
    spec = body or AccountPut()
    admin_only = [spec.initial_grant, spec.overdraft_limit, spec.status, spec.aliases or None]
    if any(setting is not None for setting in admin_only):
        ensure_scope(key, "admin", "setting initial_grant, overdraft_limit, status or aliases")
    money = ledger.money
    account, created = await ledger.open_account(
        account_id,
        initial_grant=0
        if spec.initial_grant is None
        else units(money, spec.initial_grant, "initial_grant", allow_zero=True),
        overdraft_limit=None
        if spec.overdraft_limit is None
        else units(money, spec.overdraft_limit, "overdraft_limit", allow_zero=True),
        aliases=tuple(spec.aliases),
        metadata=spec.metadata,
        status=spec.status,
        low_balance_threshold=None
        if spec.low_balance_threshold is None
        else units(money, spec.low_balance_threshold, "low_balance_threshold", allow_zero=True),
        time_zone=(spec.time_zone or "UTC") if "time_zone" in spec.model_fields_set else None,
        actor=actor(key),
    )
    return respond(AccountOut.of(account, money), 201 if created else 200)


@router.get(
    "/accounts/{account_id}", response_model=AccountOut, responses=error_responses(403, 404)
)
async def get_account(
    account_id: AccountPath, ledger: LedgerDep, _key: ReadKey
) -> ExactJSONResponse:
    """An account's balance, held and available credits. One that does not exist yet is
    shown as its first write will create it, with ``created_at`` null: reads never create."""
    return respond(AccountOut.of(await ledger.get_account(account_id), ledger.money))


@router.get(
    "/accounts/{account_id}/runway",
    response_model=RunwayOut,
    responses=error_responses(403, 404),
)
async def get_runway(
    account_id: AccountPath, ledger: LedgerDep, _key: ReadKey
) -> ExactJSONResponse:
    """How long an account's credits last at the rate it spends them: ``burn_per_day`` is
    the larger of the last 24 hours' spend and the mean day of the last 7, a subscription
    plan's allowance left out of both what is available and what is burnt. ``runway_days``
    is null, with a ``reason``, for an account less than a day old or one that burns
    nothing. An account that does not exist yet is 404."""
    return respond(RunwayOut.of(await ledger.runway(account_id), ledger.money))


@router.get("/accounts", response_model=AccountPage, responses=error_responses(403))
async def list_accounts(
    ledger: LedgerDep,
    _key: ReadKey,
    limit: Limit = 50,
    cursor: Cursor = None,
    search: Annotated[
        Annotated[str, NoNul] | None, Query(max_length=128, description="Id or alias prefix.")
    ] = None,
) -> ExactJSONResponse:
    """Customer accounts in id order."""
    page = await ledger.list_accounts(limit=limit, cursor=cursor, search=search)
    return respond(
        AccountPage(
            data=[AccountOut.of(account, ledger.money) for account in page.items],
            next_cursor=page.next_cursor,
        )
    )


@router.post(
    "/grants", response_model=TransferOut, status_code=201, responses=error_responses(403, 404, 409)
)
async def create_grant(
    body: GrantCreate, ledger: LedgerDep, key: AdminKey, idempotency_key: IdempotencyHeader = None
) -> ExactJSONResponse:
    """Give an account credits (admin)."""
    transfer = await ledger.grant(
        body.account_id,
        units(ledger.money, body.amount, "amount"),
        source=body.source,
        expires_at=body.expires_at,
        priority=body.priority,
        reason=body.reason,
        metadata=body.metadata,
        idempotency_key=pick_key(idempotency_key, body.idempotency_key),
        app=key.name,
        actor=actor(key),
    )
    return respond(TransferOut.of(transfer, ledger.money), 201, replayed=transfer.replayed)


@router.post(
    "/charges",
    response_model=TransferOut,
    status_code=201,
    responses=error_responses(402, 403, 404, 409),
)
async def create_charge(
    body: ChargeCreate, ledger: LedgerDep, key: AppKey, idempotency_key: IdempotencyHeader = None
) -> ExactJSONResponse:
    """Spend credits: an amount, or what a feature or an LLM call's usage costs.

    A priced charge carries its breakdown in ``pricing``. 402 ``insufficient_credits``
    when the account cannot afford it; 422 ``unknown_feature``/``unknown_model`` list the
    names the catalog knows.
    """
    amount, use = priced(ledger.money, body)
    transfer = await ledger.charge(
        body.account_id,
        amount,
        use=use,
        description=body.description,
        metadata=body.metadata,
        idempotency_key=pick_key(idempotency_key, body.idempotency_key),
        app=key.name,
        member=body.member,
    )
    return respond(TransferOut.of(transfer, ledger.money), 201, replayed=transfer.replayed)


@router.get(
    "/accounts/{account_id}/transactions",
    response_model=TransferPage,
    responses=error_responses(403, 404),
)
async def list_transactions(
    account_id: AccountPath,
    ledger: LedgerDep,
    _key: ReadKey,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ExactJSONResponse:
    """An account's transfers, newest first, each with its signed ``change``."""
    history = await ledger.transactions(account_id, limit=limit, cursor=cursor)
    return respond(
        TransferPage(
            data=[
                TransferOut.of(transfer, ledger.money, history.account_id)
                for transfer in history.items
            ],
            next_cursor=history.next_cursor,
        )
    )


@router.get(
    "/transactions/{transfer_id}", response_model=TransferOut, responses=error_responses(403, 404)
)
async def get_transaction(
    transfer_id: Annotated[str, Path(max_length=64)], ledger: LedgerDep, _key: ReadKey
) -> ExactJSONResponse:
    """One transfer."""
    return respond(TransferOut.of(await ledger.get_transfer(transfer_id), ledger.money))


@router.get(
    "/accounts/{account_id}/verify",
    response_model=VerificationOut,
    responses=error_responses(403, 404),
)
async def verify_account(
    account_id: AccountPath, ledger: LedgerDep, _key: ReadKey
) -> ExactJSONResponse:
    """Check the stored balance against the sum of the account's transfers."""
    return respond(VerificationOut.of(await ledger.verify_account(account_id), ledger.money))


@router.post(
    "/accounts/{account_id}/rebuild",
    response_model=VerificationOut,
    responses=error_responses(403, 404),
)
async def rebuild_account(
    account_id: AccountPath,
    ledger: LedgerDep,
    key: AdminKey,
    _idempotency_key: IdempotencyHeader = None,
) -> ExactJSONResponse:
    """Reset a drifted stored balance from the transfers (admin, audited).

    Answers the verification made before the rebuild.
    """
    verification = await ledger.rebuild_account(account_id, actor=actor(key))
    return respond(VerificationOut.of(verification, ledger.money))
