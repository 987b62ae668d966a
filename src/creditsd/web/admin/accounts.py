"""The console's accounts: the list, an account's page with its ledger, and what an
operator does to an account (grants, adjustments, freezes, turning auto top-up off)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from creditsd.api.auth import ledger_of
from creditsd.autotopup import service as autotopup
from creditsd.autotopup.errors import NoAutoTopup
from creditsd.autotopup.models import AutoTopup
from creditsd.holds import repository as holds_repo
from creditsd.inprocess import Ledger
from creditsd.kit.errors import CreditsError, InvalidRequest, NotFound
from creditsd.kit.money import AmountError
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger.errors import AccountNotFound
from creditsd.ledger.models import Account, Transfer
from creditsd.ledger.runway import Runway
from creditsd.members import service as members
from creditsd.members.service import WalletStanding
from creditsd.price_settings import PricingSettings
from creditsd.web import stamps
from creditsd.web.admin.console import (
    HOME_URL,
    PAGE_SIZE,
    AdminRoute,
    Operator,
    Posted,
    Signed,
    Submission,
    done,
    failure,
    render,
    typed,
)
from creditsd.web.pages import (
    counted,
    credits,
)
from creditsd.web.stamps import Stamp
from creditsd.webhooks import repository as webhooks_repo

SIDE_LIST = 20  # holds, lots and deliveries shown on an account's page

router = APIRouter(route_class=AdminRoute)


# Accounts


@router.get("/accounts")
async def accounts(
    request: Request, op: Signed, q: str | None = None, cursor: str | None = None
) -> Response:
    """Customer accounts, searched by id or alias prefix."""
    search = typed(q, 128) or None
    found = await ledger_of(request).list_accounts(limit=PAGE_SIZE, cursor=cursor, search=search)
    return await render(
        request, op, "accounts.html", accounts=found.items, next_cursor=found.next_cursor, q=search
    )


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A transfer as the console's ledger shows it: in the ledger's words, with what a
    priced one paid for as its customer reads it (``Chat message``, ``3 uses at 10 credits
    each``) and every term of its price stamp (version, markup, multiplier, rounding)."""

    transfer: Transfer
    item: str | None
    used: str | None
    terms: list[str]


def _ledger_row(transfer: Transfer, catalog: PricingSettings) -> LedgerRow:
    stamp = Stamp(transfer.pricing)
    return LedgerRow(
        transfer,
        stamps.named(stamp, catalog),
        stamps.used(stamps.catalog_priced(transfer), catalog),
        stamps.terms(stamp),
    )


@dataclass(frozen=True, slots=True)
class AccountSide:
    """What an account's page lists beside its ledger."""

    holds: list[Any]
    lots: list[Any]
    deliveries: list[Any]
    wallet: WalletStanding  # its members and limits, and its spend per member
    topup: AutoTopup | None  # None: never set up
    runway: Runway


async def _topup(conn: Any, account_id: str, now: datetime) -> AutoTopup | None:
    try:
        return await autotopup.get_auto_topup(conn, account_id, now)
    except NoAutoTopup:
        return None


async def _account_page(
    request: Request,
    op: Operator,
    account_id: str,
    *,
    cursor: str | None = None,
    status: int = 200,
    notices: list[dict[str, str]] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    ledger = ledger_of(request)
    account = await _existing(ledger, account_id)
    history = await ledger.transactions(account.id, limit=PAGE_SIZE, cursor=cursor)

    async def side(conn: Any, now: datetime) -> AccountSide:
        return AccountSide(
            await holds_repo.open_holds_of(conn, account.id, SIDE_LIST),
            await lot_repo.live_lots(conn, account.id, SIDE_LIST),
            await webhooks_repo.account_messages(conn, account.id, SIDE_LIST),
            await members.wallet_standing(conn, account.id, now),
            await _topup(conn, account.id, now),
            await ledger_accounts.account_runway(conn, account.id, now),
        )

    listed = await ledger.database.read(side)
    catalog = (await ledger.catalog()).settings
    return await render(
        request,
        op,
        "account.html",
        status,
        notices,
        account=account,
        rows=[_ledger_row(transfer, catalog) for transfer in history.items],
        next_cursor=history.next_cursor,
        side=listed,
        now=ledger.now(),
        counted=counted,
        form=form or {},
        request_key=secrets.token_urlsafe(18),
    )


async def _existing(ledger: Ledger, account_id: str) -> Account:
    """An account that exists (a read would otherwise show one not yet opened)."""
    account = await ledger.get_account(account_id)
    if account.created_at is None:
        raise AccountNotFound(account_id)
    return account


def _account_url(account_id: str) -> str:
    return f"{HOME_URL}/{account_id}"


@router.get("/accounts/{account_id}")
async def account_page(
    request: Request, op: Signed, account_id: str, cursor: str | None = None
) -> Response:
    """An account: its balance, ledger, holds, lots and webhook deliveries, a team wallet's
    members, limits and spend per member, and the forms that act on it."""
    return await _account_page(request, op, account_id, cursor=cursor)


def _units(ledger: Ledger, text: str) -> int:
    """A positive amount of credits typed in a form, in minor units."""
    try:
        units = ledger.money.to_minor(text, allow_zero=True, allow_negative=True)
    except AmountError:
        raise InvalidRequest(
            f"Enter the amount as a number of credits with at most {ledger.money.scale} "
            "decimal places, like 100 or 2.5"
        ) from None
    if units <= 0:
        raise InvalidRequest("Enter an amount greater than zero")
    return units


def _reason(posted: Submission) -> str:
    reason = posted.text("reason")
    if not reason:
        raise InvalidRequest("Say why: the reason is kept on the transfer and in the audit log")
    return reason


async def _act(
    request: Request,
    posted: Submission,
    account_id: str,
    action: Callable[[Ledger], Awaitable[str]],
) -> Response:
    """Run an action on an account; its page again, with what happened or why not. An
    account that does not exist is a 404, as its page is: a form never opens one."""
    ledger = ledger_of(request)
    await _existing(ledger, account_id)
    try:
        said = await action(ledger)
    except NotFound:
        raise
    except CreditsError as refused:
        fields = ("amount", "reason", "direction", "status_reason")
        return await _account_page(
            request,
            posted.operator,
            account_id,
            status=refused.status if refused.status < 500 else 422,
            notices=[failure(refused, ledger)],
            form={name: posted.text(name) for name in fields},
        )
    return await done(request, _account_url(account_id), said)


@router.post("/accounts/{account_id}/grant")
async def grant(request: Request, posted: Posted, account_id: str) -> Response:
    """Give the account credits, with a reason (audited)."""

    async def work(ledger: Ledger) -> str:
        units = _units(ledger, posted.text("amount", 40))
        transfer = await ledger.grant(
            account_id,
            units,
            reason=_reason(posted),
            idempotency_key=posted.text("request_key", 64) or None,
            app=posted.operator.key.name,
            actor=posted.operator.actor,
        )
        return _moved("Granted", transfer, ledger)

    return await _act(request, posted, account_id, work)


@router.post("/accounts/{account_id}/adjust")
async def adjust(request: Request, posted: Posted, account_id: str) -> Response:
    """Correct the account's balance up or down, with a reason (audited)."""

    async def work(ledger: Ledger) -> str:
        direction = posted.text("direction", 10)
        if direction not in {"credit", "debit"}:
            raise InvalidRequest("Choose whether to add credits or take them away")
        units = _units(ledger, posted.text("amount", 40))
        transfer = await ledger.adjust(
            account_id,
            units if direction == "credit" else -units,
            reason=_reason(posted),
            idempotency_key=posted.text("request_key", 64) or None,
            app=posted.operator.key.name,
            actor=posted.operator.actor,
        )
        return _moved("Added" if direction == "credit" else "Took away", transfer, ledger)

    return await _act(request, posted, account_id, work)


def _moved(verb: str, transfer: Transfer, ledger: Ledger) -> str:
    """What a grant or adjustment did: ``Granted 100 credits; the balance is now 103 (tr_…).``"""
    if transfer.replayed:
        return f"This form was already sent: nothing more was done ({transfer.id})."
    moved = ledger.money.to_decimal(transfer.amount)
    said = f"{verb} {credits(moved)} credit{'' if moved == 1 else 's'}"
    balance = transfer.balance_after(transfer.customer_account_id)
    if balance is not None:
        said += f"; the balance is now {credits(ledger.money.to_decimal(balance))}"
    return f"{said} ({transfer.id})."


STATUS_DONE = {"active": "reactivated", "frozen": "frozen", "closed": "closed"}


@router.post("/accounts/{account_id}/status")
async def set_status(request: Request, posted: Posted, account_id: str) -> Response:
    """Freeze, close or reactivate the account (audited, with the reason if given)."""

    async def work(ledger: Ledger) -> str:
        wanted = posted.text("status", 16)
        if wanted not in STATUS_DONE:
            raise InvalidRequest("Choose to freeze, close or reactivate the account")
        changed = await ledger.set_status(
            account_id,
            wanted,
            reason=posted.text("status_reason") or None,
            actor=posted.operator.actor,
        )
        if not changed:
            return f"Nothing changed: the account was already {wanted}."
        return f"The account is {STATUS_DONE[wanted]}."

    return await _act(request, posted, account_id, work)


@router.post("/accounts/{account_id}/auto-topup/off")
async def auto_topup_off(request: Request, posted: Posted, account_id: str) -> Response:
    """Turn the account's auto top-up off at once, keeping its rule and card (audited as
    the operator). Turning it on needs the customer's consent: the console cannot."""

    async def work(ledger: Ledger) -> str:
        _state, was_on = await ledger.database.write(
            lambda conn, now: autotopup.turn_off(conn, account_id, now, actor=posted.operator.actor)
        )
        if not was_on:
            return "Nothing changed: auto top-up was already off."
        return "Auto top-up is off; its rule and the saved card are kept."

    return await _act(request, posted, account_id, work)
