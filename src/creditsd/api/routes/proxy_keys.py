"""``/v1/proxy-keys`` (app): mint, list and revoke per-account keys for ``/openai/v1``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from creditsd.api.auth import AppKey, LedgerDep, actor
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import Cursor, Limit, respond, units
from creditsd.api.schemas.members import LimitList, LimitsPut, limit_specs
from creditsd.api.schemas.proxy_keys import (
    ProxyKeyCreate,
    ProxyKeyCreated,
    ProxyKeyOut,
    ProxyKeyPage,
)
from creditsd.kit.ids import ACCOUNT_ID_PATTERN
from creditsd.members import service as members
from creditsd.proxy_keys import service

router = APIRouter(prefix="/v1/proxy-keys", route_class=StrictJSONRoute, tags=["proxy"])
KeyPath = Annotated[str, Path(max_length=32, pattern=r"^pxk_[0-9a-z]+$")]


@router.post(
    "", response_model=ProxyKeyCreated, status_code=201, responses=error_responses(403, 404)
)
async def mint_key(body: ProxyKeyCreate, ledger: LedgerDep, key: AppKey) -> ExactJSONResponse:
    """Mint a key that pays for one account's calls to ``/openai/v1``, within ``limit``;
    with ``member``, each call is that member's (its limits count it).

    The answer carries its secret, shown this once: hand it to the account's client as
    the API key of an OpenAI SDK. It works only on ``/openai/v1`` and only for this
    account, until it expires or is revoked. The account is created if
    ``[accounts] auto_create`` allows. Not idempotent: the secret is never stored, so a
    repeat could not answer it; a key whose answer was lost is listed, to be revoked.
    """
    spend_limit = None if body.limit is None else units(ledger.money, body.limit, "limit")
    lifetime = None if body.expires_in is None else timedelta(seconds=body.expires_in)
    asked = service.Minting(
        account_id=body.account_id,
        app=key.name,
        member=body.member,
        name=body.name,
        expires_in=lifetime,
        spend_limit=spend_limit,
        rate_limit=body.rate_limit,
    )
    minted, secret = await ledger.database.write(
        lambda conn, now: service.mint(conn, asked, ledger.policy, now, actor=actor(key))
    )
    shown = ProxyKeyOut.of(minted, ledger.money)
    return respond(ProxyKeyCreated(**shown.model_dump(), secret=secret), 201)


@router.get("", response_model=ProxyKeyPage, responses=error_responses(403))
async def list_keys(
    ledger: LedgerDep,
    _key: AppKey,
    account_id: Annotated[
        str | None,
        Query(pattern=f"^{ACCOUNT_ID_PATTERN}$", description="Only this account's (id or alias)."),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ExactJSONResponse:
    """Proxy keys, newest first, revoked and expired ones included."""
    page = await ledger.database.read(
        lambda conn, now: service.list_keys(conn, account_id, limit, cursor, now)
    )
    return respond(
        ProxyKeyPage(
            data=[ProxyKeyOut.of(key, ledger.money) for key in page.items],
            next_cursor=page.next_cursor,
        )
    )


@router.put("/{key_id}/limits", response_model=LimitList, responses=error_responses(403, 404, 422))
async def put_key_limits(
    key_id: KeyPath, body: LimitsPut, ledger: LedgerDep, key: AppKey
) -> ExactJSONResponse:
    """Set what calls through this key may spend per day, week or month (or lifetime),
    audited: its whole set of period limits, counted like every spend limit; every limit
    on its account afterwards."""
    specs = limit_specs(ledger.money, body.limits)
    tallies = await ledger.database.write(
        lambda conn, now: members.put_key_limits(
            conn, key_id, specs, ledger.policy, now, actor=actor(key)
        )
    )
    return respond(LimitList.of(tallies, ledger.money))


@router.delete("/{key_id}", response_model=ProxyKeyOut, responses=error_responses(403, 404))
async def revoke_key(
    key_id: KeyPath, request: Request, ledger: LedgerDep, key: AppKey
) -> ExactJSONResponse:
    """Revoke a key (audited): it pays for no new call from now on, in every process;
    calls it already began still settle. Revoking twice is harmless."""
    revoked = await ledger.database.write(
        lambda conn, now: service.revoke(conn, key_id, now, actor=actor(key))
    )
    request.app.state.proxy_key_cache.forget(key_id)
    return respond(ProxyKeyOut.of(revoked, ledger.money))
