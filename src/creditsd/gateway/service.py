"""The gateway link: balances it pushes in, usage it billed, both as ledger transfers.

Balances cross in US dollars, rounded half up to 4 places as seed 000 does; a usage cost
is taken exactly, whatever its size. Both are converted to credits at the current
catalog's ``credits_per_usd``: one price of a dollar for the whole deployment. Gateway
points are dollars × ``[gateway] points_to_usd``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import inbox
from creditsd.config import LinkSettings
from creditsd.gateway.errors import BadInternalSecret, GatewayNotConfigured
from creditsd.kit import ids
from creditsd.kit.errors import InvalidRequest
from creditsd.kit.idempotency import asked_as_items, fingerprint_of, not_asked
from creditsd.kit.money import AmountError, Money
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger_service
from creditsd.ledger.errors import AccountNotFound, IdempotencyConflict
from creditsd.ledger.models import GATEWAY, REVENUE, Transfer

GATEWAY_APP = "gateway"  # the app name on the transfers the gateway's calls make
_CENT_HUNDREDTHS = Decimal("0.0001")
_LARGEST_USD = Decimal(10) ** 15
_REPORTED = "sub2api_balance_usd"  # the gateway's balance after a post, not part of it


def check_secret(settings: LinkSettings, section: str, given: str | None) -> None:
    """Let in only a request carrying the link's secret (compared in constant time)."""
    if settings.internal_secret is None:
        raise GatewayNotConfigured(section)
    expected = settings.internal_secret.get_secret_value().encode()
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise BadInternalSecret


def dollars(value: Decimal, field: str) -> Decimal:
    """Dollars within the range any balance or cost can have, exactly as given."""
    if abs(value) >= _LARGEST_USD:
        raise InvalidRequest(f"{field} is out of range", field=field)
    return value


def usd(value: Decimal, field: str) -> Decimal:
    """Dollars rounded half up to 4 places, as the gateway keeps balances."""
    with localcontext() as context:
        context.prec = 60
        return dollars(value, field).quantize(_CENT_HUNDREDTHS, rounding=ROUND_HALF_UP)


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


def reported_dollars(
    settings: LinkSettings, *, points: Decimal | None, usd_given: Decimal | None, field: str
) -> Decimal:
    """The dollars a balance report stands for: ``points`` divided by ``[app_link]
    points_to_usd``, else the dollars given in ``field``, rounded as the gateway keeps them."""
    if points is not None:
        return usd(points / settings.points_to_usd, "balance_points")
    assert usd_given is not None
    return usd(usd_given, field)


def to_dollars(units: int, credits_per_usd: Decimal, money: Money) -> Decimal:
    """Minor units of credits as dollars, 4 places."""
    with localcontext() as context:
        context.prec = 60
        return usd(money.to_decimal(units) / credits_per_usd, "balance")


async def sync_balance(
    conn: AsyncConnection,
    name: str,
    target: int,
    policy: ledger_service.Policy,
    now: datetime,
    *,
    metadata: dict[str, Any] | None = None,
) -> Transfer | None:
    """Bring an account's balance to ``target`` by one ``sync`` transfer for the difference
    against ``@gateway`` (None when it is already there).

    The account row is locked first, so the difference is taken against the balance the
    transfer lands on. A sync down may take the balance below zero, as the gateway allows.
    """
    account_id = await ledger_accounts.resolve_account(conn, name, policy, now)
    row = await ledger_repo.get_account_row(conn, account_id, lock=True)
    if row is None:  # pragma: no cover - resolved in this transaction
        raise AccountNotFound(name)
    difference = target - int(row.balance)
    if not difference:
        return None
    up = difference > 0
    sync = ledger_service.Movement(
        kind="sync",
        debit_account_id=GATEWAY if up else account_id,
        credit_account_id=account_id if up else GATEWAY,
        amount=abs(difference),
        app=GATEWAY_APP,
        idempotency_key=ids.new_id("sync"),
        description="balance sync from the gateway",
        metadata=metadata,
        fresh_key=True,
        system=not up,
        forced=not up,
    )
    return await ledger_service.post_transfer(conn, sync, policy, now)


CARRY_UNITS = 10**12  # the carried fraction is kept in 10⁻¹² of a minor unit


def exact_units(dollars: Decimal, credits_per_usd: Decimal, money: Money) -> Decimal:
    """Dollars as minor units of credits, exactly (a fraction of a minor unit too)."""
    with localcontext() as context:
        context.prec = 80
        return dollars * credits_per_usd * money.unit


@dataclass(frozen=True, slots=True, kw_only=True)
class UsagePost:
    """One usage post of a gateway: what it billed and every field it sent (``payload``,
    its API key left out), with the request id it gave, if any (``requestId``, else an
    ``Idempotency-Key`` or ``X-Request-Id`` header). What identifies the billed request
    is its payload, but for the gateway's balance after it (which a resend may report
    differently)."""

    operation: ClassVar[str] = "gateway-usage"
    user_id: str = not_asked()
    model: str = not_asked()
    cost: Decimal = not_asked()
    gateway_balance_usd: Decimal | None = not_asked()
    payload: dict[str, Any] = asked_as_items(leaving_out={_REPORTED})
    request_id: str | None = not_asked()


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one usage post did: ``status`` (charged, carried, duplicate), the transfer, and
    the account's balance after (minor units)."""

    status: str
    transfer_id: str | None
    balance: int


async def record_usage(
    conn: AsyncConnection,
    post: UsagePost,
    credits_per_usd: Decimal,
    money: Money,
    policy: ledger_service.Policy,
    now: datetime,
) -> Recorded:
    """Charge what the gateway already billed, once per request: keyed by its request id,
    else by its fingerprint.

    ``cost`` is converted to credits exactly at ``credits_per_usd``. The post is kept in
    the inbox with everything it carried, so a repeat is recognised even when it charged
    nothing. What is below a minor unit is added to the account's carried fraction, and
    each whole minor unit the fraction reaches is charged with the post that reaches it,
    so N posts charge their exact total to within one minor unit. The request was
    served, so the charge goes through whatever the balance (it may go below zero, as the
    gateway's own balance may) and the status.
    """
    request = fingerprint_of(post)
    key, name = post.request_id or request, post.user_id
    units = exact_units(dollars(post.cost, "cost"), credits_per_usd, money)
    if not await inbox.store(conn, GATEWAY_APP, key, "usage", post.payload, now):
        return await _repeated(conn, key, request, name, policy, now)
    account_id = await ledger_accounts.resolve_account(conn, name, policy, now)
    row = await ledger_repo.get_account_row(conn, account_id, lock=True)
    if row is None:  # pragma: no cover - resolved in this transaction
        raise AccountNotFound(name)
    charged, carry = _split_owed(units, int(row.usage_carry))
    await ledger_repo.update_account(conn, account_id, {"usage_carry": carry}, now)
    detail: dict[str, Any] = {"fingerprint": request, "charged": charged, "carry": carry}
    if not charged:
        await inbox.mark_handled(conn, GATEWAY_APP, key, "carried", detail, now)
        return Recorded("carried", None, int(row.balance))
    carried = (int(row.usage_carry), carry)
    charge = _usage_charge(post, key, account_id, charged, credits_per_usd, carried)
    transfer = await ledger_service.post_transfer(conn, charge, policy, now)
    await inbox.mark_handled(
        conn, GATEWAY_APP, key, "charged", {**detail, "transfers": [transfer.id]}, now
    )
    balance = transfer.debit_balance_after
    return Recorded(
        "charged", transfer.id, int(row.balance) - charged if balance is None else balance
    )


def _split_owed(units: Decimal, carried: int) -> tuple[int, int]:
    """What a post owes with the fraction carried before it (in ``CARRY_UNITS``), as the
    whole minor units to charge now and the fraction to carry on."""
    with localcontext() as context:
        context.prec = 80
        owed = units + Decimal(carried) / CARRY_UNITS
        charged = int(owed.to_integral_value(rounding=ROUND_FLOOR))
        carry = int(((owed - charged) * CARRY_UNITS).to_integral_value(rounding=ROUND_HALF_EVEN))
    if carry >= CARRY_UNITS:  # the fraction rounded up to a whole unit
        charged, carry = charged + 1, carry - CARRY_UNITS
    return charged, carry


def _usage_charge(
    post: UsagePost,
    key: str,
    account_id: str,
    charged: int,
    credits_per_usd: Decimal,
    carried: tuple[int, int],
) -> ledger_service.Movement:
    """The charge of a post, priced by everything it carried and the fraction carried
    before and after it."""
    before, after = carried
    return ledger_service.Movement(
        kind="charge",
        debit_account_id=account_id,
        credit_account_id=REVENUE,
        amount=charged,
        app=GATEWAY_APP,
        idempotency_key=f"gateway-usage:{key}",
        description=f"{post.model} via the gateway",
        pricing={
            **post.payload,
            "source": "gateway",  # after the post's own fields, which may not stand in for it
            "cost_usd": post.cost,
            "credits_per_usd": credits_per_usd,
            "gateway_balance_usd": post.gateway_balance_usd,
            "carried_before": before,
            "carried_after": after,
        },
        system=True,
        forced=True,
    )


async def _repeated(
    conn: AsyncConnection,
    key: str,
    request: str,
    name: str,
    policy: ledger_service.Policy,
    now: datetime,
) -> Recorded:
    """A post already recorded: the same request answers duplicate, another one conflicts."""
    event = await inbox.get(conn, GATEWAY_APP, key)
    detail = (event.detail if event is not None else None) or {}
    if detail.get("fingerprint") != request:
        raise IdempotencyConflict(key)
    transfers = detail.get("transfers") or [None]
    account_id = await ledger_accounts.resolve_account(conn, name, policy, now, create=False)
    row = await ledger_repo.get_account_row(conn, account_id)
    return Recorded("duplicate", transfers[0], 0 if row is None else int(row.balance))
