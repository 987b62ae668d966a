"""``/v1/accounts/{id}/members`` and ``…/limits`` (app): a team wallet's members and the
spend limits on it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from creditsd.api.auth import AppKey, LedgerDep, ReadKey, actor
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import Cursor, Limit, respond
from creditsd.api.schemas.members import (
    LimitList,
    LimitsPut,
    MemberOut,
    MemberPage,
    MemberPut,
    limit_specs,
)
from creditsd.keys.service import APP_NAME_PATTERN
from creditsd.kit.fields import AccountId
from creditsd.members import service

router = APIRouter(prefix="/v1/accounts", route_class=StrictJSONRoute, tags=["members"])

WalletPath = Annotated[AccountId, Path(description="The wallet's account id or an alias.")]
MemberPath = Annotated[AccountId, Path(description="The member's id, of the app's choosing.")]
AppPath = Annotated[str, Path(pattern=f"^{APP_NAME_PATTERN}$", description="An API key's name.")]


@router.put(
    "/{account_id}/members/{member_id}",
    response_model=MemberOut,
    status_code=201,
    responses={200: {"model": MemberOut, "description": "Updated"}, **error_responses(403, 404)},
)
async def put_member(
    account_id: WalletPath, member_id: MemberPath, body: MemberPut, ledger: LedgerDep, key: AppKey
) -> ExactJSONResponse:
    """Add a member to the wallet (201) or update one (200), audited. ``limits`` replaces
    the member's limits (a limit whose amount and period stay keeps its window's spend; a
    new or changed one starts at zero); ``display_name`` renames it. Either left out stays
    as it is."""
    specs = None if body.limits is None else limit_specs(ledger.money, body.limits)
    member, added = await ledger.database.write(
        lambda conn, now: service.put_member(
            conn,
            account_id,
            member_id,
            body.display_name,
            specs,
            ledger.policy,
            now,
            actor=actor(key),
        )
    )
    return respond(MemberOut.of(member, ledger.money), 201 if added else 200)


@router.get("/{account_id}/members", response_model=MemberPage, responses=error_responses(403, 404))
async def list_members(
    account_id: WalletPath,
    ledger: LedgerDep,
    _key: ReadKey,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ExactJSONResponse:
    """The wallet's members by id, each with its limits' spend in their current windows."""
    page = await ledger.database.read(
        lambda conn, now: service.list_members(conn, account_id, limit, cursor, now)
    )
    return respond(
        MemberPage(
            data=[MemberOut.of(member, ledger.money) for member in page.items],
            next_cursor=page.next_cursor,
        )
    )


@router.delete(
    "/{account_id}/members/{member_id}",
    response_model=MemberOut,
    responses=error_responses(403, 404),
)
async def remove_member(
    account_id: WalletPath, member_id: MemberPath, ledger: LedgerDep, key: AppKey
) -> ExactJSONResponse:
    """Remove a member and its limits (audited). Its open holds still settle; its past
    spend stays attributed to it."""
    member = await ledger.database.write(
        lambda conn, now: service.remove_member(
            conn, account_id, member_id, ledger.policy, now, actor=actor(key)
        )
    )
    return respond(MemberOut.of(member, ledger.money))


@router.get("/{account_id}/limits", response_model=LimitList, responses=error_responses(403, 404))
async def list_limits(
    account_id: WalletPath, ledger: LedgerDep, _key: ReadKey
) -> ExactJSONResponse:
    """Every limit on the wallet (its own, its members', its apps', its proxy keys'), with
    its current window's spend, what open holds reserve and when the window resets."""
    tallies = await ledger.database.read(lambda conn, now: service.limits_of(conn, account_id, now))
    return respond(LimitList.of(tallies, ledger.money))


@router.put("/{account_id}/limits", response_model=LimitList, responses=error_responses(403, 404))
async def put_wallet_limits(
    account_id: WalletPath, body: LimitsPut, ledger: LedgerDep, key: AppKey
) -> ExactJSONResponse:
    """Set the wallet's own limits (all its spend, whoever spends), audited; every limit
    on the wallet afterwards."""
    specs = limit_specs(ledger.money, body.limits)
    tallies = await ledger.database.write(
        lambda conn, now: service.put_limits(
            conn, account_id, "wallet", "", specs, ledger.policy, now, actor=actor(key)
        )
    )
    return respond(LimitList.of(tallies, ledger.money))


@router.put(
    "/{account_id}/apps/{app}/limits",
    response_model=LimitList,
    responses=error_responses(403, 404),
)
async def put_app_limits(
    account_id: WalletPath, app: AppPath, body: LimitsPut, ledger: LedgerDep, key: AppKey
) -> ExactJSONResponse:
    """Set the limits of what one app (an API key's name) spends from the wallet."""
    specs = limit_specs(ledger.money, body.limits)
    tallies = await ledger.database.write(
        lambda conn, now: service.put_limits(
            conn, account_id, "app", app, specs, ledger.policy, now, actor=actor(key)
        )
    )
    return respond(LimitList.of(tallies, ledger.money))
