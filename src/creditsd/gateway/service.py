"""The gateway link: balances it pushes in, usage it billed, both as ledger transfers.

Money crosses in US dollars, rounded half up to 4 places as seed 000 does, and is
converted to credits at the current catalog's ``credits_per_usd``: one price of a dollar
for the whole deployment. Gateway points are dollars × ``[gateway] points_to_usd``.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import ids
from creditsd.config import GatewaySettings
from creditsd.errors import InvalidRequest
from creditsd.gateway.errors import BadInternalSecret, GatewayNotConfigured
from creditsd.idempotency import fingerprint
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger
from creditsd.ledger.errors import AccountNotFound
from creditsd.ledger.models import GATEWAY, REVENUE, Transfer
from creditsd.money import AmountError, Money

GATEWAY_APP = "gateway"  # the app name on the transfers the gateway's calls make
_CENT_HUNDREDTHS = Decimal("0.0001")
_LARGEST_USD = Decimal(10) ** 15


def check_secret(settings: GatewaySettings, given: str | None) -> None:
    """Let in only a request carrying the configured secret (compared in constant time)."""
    if settings.internal_secret is None:
        raise GatewayNotConfigured
    expected = settings.internal_secret.get_secret_value().encode()
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise BadInternalSecret


def usd(value: Decimal, field: str) -> Decimal:
    """Dollars rounded half up to 4 places, as the gateway keeps them."""
    if abs(value) >= _LARGEST_USD:
        raise InvalidRequest(f"{field} is out of range", field=field)
    with localcontext() as context:
        context.prec = 60
        return value.quantize(_CENT_HUNDREDTHS, rounding=ROUND_HALF_UP)


def to_units(dollars: Decimal, credits_per_usd: Decimal, money: Money, field: str) -> int:
    """Dollars as minor units of credits, rounded half up once at the ledger's scale."""
    with localcontext() as context:
        context.prec = 60
        credits = (dollars * credits_per_usd).quantize(
            Decimal(1).scaleb(-money.scale), rounding=ROUND_HALF_UP
        )
    try:
        return money.to_minor(credits, allow_zero=True, allow_negative=True)
    except AmountError as exc:
        raise InvalidRequest(f"{field} {exc}", field=field) from exc


def to_dollars(units: int, credits_per_usd: Decimal, money: Money) -> Decimal:
    """Minor units of credits as dollars, 4 places."""
    with localcontext() as context:
        context.prec = 60
        return usd(money.to_decimal(units) / credits_per_usd, "balance")


async def sync_balance(
    conn: AsyncConnection, name: str, target: int, policy: ledger.Policy, now: datetime
) -> Transfer | None:
    """Bring an account's balance to ``target`` by one ``sync`` transfer for the difference
    against ``@gateway`` (None when it is already there).

    The account row is locked first, so the difference is taken against the balance the
    transfer lands on. A sync down may take the balance below zero, as the gateway allows.
    """
    account_id = await ledger.resolve_account(conn, name, policy, now)
    row = await ledger_repo.get_account_row(conn, account_id, lock=True)
    if row is None:  # pragma: no cover - resolved in this transaction
        raise AccountNotFound(name)
    difference = target - int(row.balance)
    if not difference:
        return None
    key = ids.new_id("sync")
    if difference > 0:
        posting = ledger.movement(
            "sync",
            GATEWAY,
            account_id,
            difference,
            app=GATEWAY_APP,
            idempotency_key=key,
            description="balance sync from the gateway",
        )
    else:
        posting = ledger.movement(
            "sync",
            account_id,
            GATEWAY,
            -difference,
            app=GATEWAY_APP,
            idempotency_key=key,
            description="balance sync from the gateway",
        )
        posting = replace(posting, system=True, forced=True)
    return await ledger.post_transfer(conn, posting, policy, now)


def usage_fingerprint(fields: dict[str, object]) -> str:
    """What identifies one billed request when the gateway sends no request id."""
    return fingerprint("gateway-usage", **fields)


async def record_usage(
    conn: AsyncConnection,
    name: str,
    units: int,
    *,
    key: str,
    request: str,
    description: str,
    pricing: dict[str, object],
    policy: ledger.Policy,
    now: datetime,
) -> Transfer:
    """Charge what the gateway already billed, once per request.

    The request was served, so the charge goes through whatever the balance (it may go
    below zero, as the gateway's own balance may) and whatever the account's status.
    """
    account_id = await ledger.resolve_account(conn, name, policy, now)
    posting = ledger.Posting(
        kind="charge",
        debit_account_id=account_id,
        credit_account_id=REVENUE,
        amount=units,
        app=GATEWAY_APP,
        idempotency_key=key,
        fingerprint=request,
        description=description,
        pricing=pricing,
        system=True,
        forced=True,
    )
    return await ledger.post_transfer(conn, posting, policy, now)
