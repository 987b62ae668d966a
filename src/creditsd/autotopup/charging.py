"""What an attempt's answer from Stripe does, in the transaction of the worker step or the
webhook that brings it. Credits are granted only for a succeeded PaymentIntent, once per
PaymentIntent id (the purchase's idempotency key and ``stripe_payments``' primary key),
whichever of the synchronous answer and ``payment_intent.succeeded`` comes first.

Declines are stricter than the card networks: advice never to retry pauses at once; other
declines back off 1 h, 2 h, 4 h and pause at the 4th in a row; a card declined 10 times in
30 days pauses too. Stripe failing, unreachable or rate limiting is tried again and never
counts as a decline. ``authentication_required`` waits for the customer (``needs_action``).
A payment left ``processing`` ends with its webhook: ``payment_intent.succeeded`` grants,
``payment_intent.payment_failed`` is a decline like any other, ``payment_intent.canceled``
ends the attempt without counting one. Each attempt is resolved once: an answer or event
for an attempt already resolved changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.autotopup import repository as repo
from creditsd.autotopup import service
from creditsd.config import Settings
from creditsd.inbox import Handled
from creditsd.ledger.posting import Policy
from creditsd.stripe import purchases
from creditsd.tables import auto_topup_attempts, auto_topups

_A = auto_topup_attempts.c
_R = auto_topups.c
# Stripe's advice on a decline (``advice_code``), and the decline codes whose issuer says the
# card is gone: retrying either only adds declines to the card's record.
NEVER_RETRY = {"do_not_try_again"}
NEVER_RETRY_DECLINES = {"do_not_try_again", "lost_card", "stolen_card", "pickup_card"}
MAX_CONSECUTIVE = 4
MAX_PER_CARD = 10  # declines of one card in CARD_WINDOW
CARD_WINDOW = timedelta(days=30)
OPEN = {"queued", "processing"}  # an attempt Stripe's answer may still resolve
INTENT_FAILED, INTENT_CANCELED = "payment_intent.payment_failed", "payment_intent.canceled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    """A queued attempt, with what charging it needs: its price (in the currency's minor
    unit) once stored."""

    id: str
    account_id: str
    credits: int
    customer_id: str
    payment_method_id: str
    pack: str | None
    amount: int | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What Stripe answered: ``outcome`` succeeded, processing, declined,
    authentication_required, canceled, or retry (Stripe failed: nothing counts)."""

    outcome: str
    payment_intent_id: str | None = None
    amount: int = 0
    currency: str = ""
    decline_code: str | None = None
    advice_code: str | None = None
    cancellation_reason: str | None = None

    @classmethod
    def paid(cls, intent: dict[str, Any]) -> Answer:
        """A succeeded PaymentIntent, as Stripe writes it (a webhook's or a retrieval's)."""
        return cls(
            outcome="succeeded",
            payment_intent_id=str(intent["id"]),
            amount=int(intent.get("amount_received") or intent.get("amount") or 0),
            currency=str(intent.get("currency") or ""),
        )


async def due_attempts(conn: AsyncConnection, limit: int = 20) -> list[Due]:
    """Queued attempts whose account's auto top-up is still on and active."""
    query = (
        select(_A.id, _A.account_id, _A.credits, _R.customer_id, _A.payment_method_id, _R.pack)
        .add_columns(_A.amount, _A.currency)
        .join(auto_topups, _R.account_id == _A.account_id)
        .where(_A.status == "queued", _R.enabled.is_(True), _R.state == "active")
        .order_by(_A.created_at)
        .limit(limit)
    )
    return [Due(**row._mapping) for row in await conn.execute(query)]


async def price(
    conn: AsyncConnection, due: Due, amount: int, currency: str, now: datetime
) -> tuple[int, str]:
    """Store the price an attempt is charged at, unless it has one (another worker priced
    it first), so that every request for it sends Stripe the same parameters under its
    key; the stored price."""
    where = (_A.account_id == due.account_id, _A.id == due.id)
    query = update(auto_topup_attempts).where(*where, _A.amount.is_(None))
    await conn.execute(query.values(amount=amount, currency=currency, updated_at=now))
    stored = (await conn.execute(select(_A.amount, _A.currency).where(*where))).one()
    return int(stored.amount), str(stored.currency)


async def cancel_stale(conn: AsyncConnection, now: datetime) -> int:
    """Cancel queued attempts of rules turned off or paused since (never sent to Stripe)."""
    stale = select(_R.account_id).where((_R.enabled.is_(False)) | (_R.state != "active"))
    query = (
        update(auto_topup_attempts)
        .where(_A.status == "queued", _A.account_id.in_(stale))
        .values(status="canceled", in_flight=None, updated_at=now)
    )
    return (await conn.execute(query)).rowcount or 0


async def settle(
    conn: AsyncConnection,
    due: Due,
    answer: Answer,
    settings: Settings,
    policy: Policy,
    now: datetime,
) -> str:
    """Record Stripe's answer to an attempt; the attempt's status after."""
    attempt = await _attempt(conn, due.account_id, due.id)
    if attempt is None or attempt.status not in OPEN:
        return "settled" if attempt is None else str(attempt.status)
    if answer.outcome == "retry":
        return "queued"
    return await _resolve(conn, attempt, answer, settings, policy, now)


async def intent_succeeded(
    conn: AsyncConnection,
    intent: dict[str, Any],
    settings: Settings,
    policy: Policy,
    now: datetime,
) -> Handled | None:
    """``payment_intent.succeeded`` of an auto top-up (None: not one): grant it, once."""
    attempt = await _attempt_of(conn, intent)
    if attempt is None or isinstance(attempt, Handled):
        return attempt
    granted = await _grant(conn, attempt, Answer.paid(intent), settings, policy, now)
    return Handled(granted.name, granted.transfers, {"auto_topup": attempt.id, **granted.notes})


async def intent_ended(
    conn: AsyncConnection,
    kind: str,
    intent: dict[str, Any],
    settings: Settings,
    policy: Policy,
    now: datetime,
) -> Handled | None:
    """``payment_intent.payment_failed`` or ``payment_intent.canceled`` of an auto top-up
    (None: not one): a decline, read from ``last_payment_error`` as Stripe writes it (any
    field may be null or missing), or a cancel; nothing when the attempt is resolved."""
    attempt = await _attempt_of(conn, intent)
    if attempt is None or isinstance(attempt, Handled):
        return attempt
    notes = {"auto_topup": attempt.id, "payment": intent.get("id")}
    if attempt.status not in OPEN:
        return Handled(f"already_{attempt.status}", notes=notes)
    if kind == INTENT_CANCELED:
        answer = Answer(
            outcome="canceled",
            payment_intent_id=notes["payment"],
            cancellation_reason=intent.get("cancellation_reason"),
        )
    else:
        error = intent.get("last_payment_error") or {}
        codes = {error.get("code"), error.get("decline_code")}
        outcome = "authentication_required" if "authentication_required" in codes else "declined"
        answer = Answer(
            outcome=outcome,
            payment_intent_id=notes["payment"],
            decline_code=error.get("decline_code"),
            advice_code=error.get("advice_code"),
        )
    status = await _resolve(conn, attempt, answer, settings, policy, now)
    return Handled(status, notes=notes)


async def _attempt_of(conn: AsyncConnection, intent: dict[str, Any]) -> Any:
    """The attempt a PaymentIntent's metadata names, locked; None when the intent is not
    an auto top-up's, ``unknown_attempt`` when the attempt is not found."""
    metadata = intent.get("metadata") or {}
    attempt_id, account_id = metadata.get("creditsd_auto_topup"), metadata.get("creditsd_account")
    if not attempt_id or not account_id:
        return None
    attempt = await _attempt(conn, str(account_id), str(attempt_id))
    return attempt or Handled("unknown_attempt", notes={"payment": intent.get("id")})


async def _resolve(
    conn: AsyncConnection,
    attempt: Any,
    answer: Answer,
    settings: Settings,
    policy: Policy,
    now: datetime,
) -> str:
    """What an open attempt's answer does; the attempt's status after."""
    await _set(conn, attempt, {"payment_intent_id": answer.payment_intent_id}, now)
    if answer.outcome == "succeeded":
        await _grant(conn, attempt, answer, settings, policy, now)
        return "succeeded"
    if answer.outcome == "processing":
        await _set(conn, attempt, {"status": "processing"}, now)
        return "processing"
    if answer.outcome == "authentication_required":
        await _set(conn, attempt, {"status": "needs_action", "in_flight": None}, now)
        await _rule(conn, attempt.account_id, {"state": "needs_action"}, now)
        told = {"attempt": attempt.id, "payment_intent": answer.payment_intent_id}
        await service.tell(conn, policy, "needs_action", attempt.account_id, told, now)
        return "needs_action"
    if answer.outcome == "canceled":
        await _set(conn, attempt, {"status": "canceled", "in_flight": None}, now)
        await repo.arm(conn, attempt.account_id)
        rule = await repo.get_rule(conn, attempt.account_id)
        failed = _failed(attempt, answer, rule.consecutive_declines, rule.next_attempt_at)
        await service.tell(conn, policy, "failed", attempt.account_id, failed, now)
        return "canceled"
    await _declined(conn, attempt, answer, policy, now)
    return "declined"


async def _grant(
    conn: AsyncConnection,
    attempt: Any,
    answer: Answer,
    settings: Settings,
    policy: Policy,
    now: datetime,
) -> Handled:
    """Grant the attempt's credits for its PaymentIntent (once), resolve it, and clear the
    declines counted against the card."""
    paid = purchases.Purchase(
        payment_id=str(answer.payment_intent_id),
        account=attempt.account_id,
        customer=None,
        amount=answer.amount,
        currency=answer.currency,
        priced=purchases.Priced(
            attempt.credits, [{"pack": "auto top-up", "quantity": 1, "auto_topup": attempt.id}], []
        ),
        event_id=f"auto_topup:{attempt.id}",
        description="auto top-up",
    )
    granted = await purchases.record_purchase(conn, paid, settings, policy, now)
    values = {"status": "succeeded", "in_flight": None, "payment_intent_id": paid.payment_id}
    if granted.transfers:
        values["transfer_id"] = granted.transfers[0]
    await conn.execute(
        update(auto_topup_attempts)
        .where(_A.account_id == attempt.account_id, _A.id == attempt.id)
        .values(**values, updated_at=now)
    )
    await _rule(conn, attempt.account_id, {"consecutive_declines": 0, "next_attempt_at": None}, now)
    if granted.name == "granted":
        told = {
            "attempt": attempt.id,
            "payment_intent": paid.payment_id,
            "credits": attempt.credits,
            "transfer_id": values.get("transfer_id"),
        }
        await service.tell(conn, policy, "succeeded", attempt.account_id, told, now)
    return granted


async def _declined(
    conn: AsyncConnection, attempt: Any, answer: Answer, policy: Policy, now: datetime
) -> None:
    """Count a decline; back off, or pause when the advice, the streak or the card's
    30 days say so."""
    values = {"status": "declined", "in_flight": None, "decline_code": answer.decline_code}
    await _set(conn, attempt, values, now)
    rule = await repo.get_rule(conn, attempt.account_id, lock=True)
    streak = rule.consecutive_declines + 1
    since = now - CARD_WINDOW
    card_declines = (
        await conn.execute(
            select(func.count()).where(
                _A.card_fingerprint == rule.card_fingerprint,
                _A.status == "declined",
                _A.created_at >= since,
            )
        )
    ).scalar_one()
    never = answer.advice_code in NEVER_RETRY or answer.decline_code in NEVER_RETRY_DECLINES
    reason = None
    if never:
        reason = f"card declined ({answer.decline_code or answer.advice_code}): do not retry"
    elif streak >= MAX_CONSECUTIVE:
        reason = f"card declined {streak} times in a row"
    elif card_declines >= MAX_PER_CARD:
        reason = f"card declined {card_declines} times in 30 days"
    change: dict[str, Any] = {"consecutive_declines": streak}
    if reason is not None:
        change |= {"state": "paused", "paused_reason": reason, "next_attempt_at": None}
    else:
        change["next_attempt_at"] = now + timedelta(hours=2 ** (streak - 1))
    await _rule(conn, attempt.account_id, change, now)
    failed = _failed(attempt, answer, streak, change.get("next_attempt_at"))
    await service.tell(conn, policy, "failed", attempt.account_id, failed, now)
    if reason is not None:
        await service.tell(conn, policy, "paused", attempt.account_id, {"reason": reason}, now)


def _failed(attempt: Any, answer: Answer, streak: int, retry_at: datetime | None) -> dict[str, Any]:
    """What ``auto_topup.failed`` says of a decline or a cancel."""
    return {
        "attempt": attempt.id,
        "payment_intent": answer.payment_intent_id,
        "decline_code": answer.decline_code,
        "advice_code": answer.advice_code,
        "canceled": answer.outcome == "canceled",
        "cancellation_reason": answer.cancellation_reason,
        "consecutive_declines": streak,
        "next_attempt_at": retry_at.isoformat() if retry_at else None,
    }


async def _attempt(conn: AsyncConnection, account_id: str, attempt_id: str) -> Any:
    query = select(auto_topup_attempts).where(_A.account_id == account_id, _A.id == attempt_id)
    return (await conn.execute(query.with_for_update())).first()


async def _set(conn: AsyncConnection, attempt: Any, values: dict[str, Any], now: datetime) -> None:
    query = update(auto_topup_attempts).where(
        _A.account_id == attempt.account_id, _A.id == attempt.id
    )
    await conn.execute(query.values(**values, updated_at=now))


async def _rule(
    conn: AsyncConnection, account_id: str, values: dict[str, Any], now: datetime
) -> None:
    await repo.update_rule(conn, account_id, {**values, "updated_at": now})
    await repo.arm(conn, account_id)


# -- The customer confirms on-session (the billing page's ``needs_action`` banner) ---------
# A PaymentIntent the bank wanted authenticated is confirmed again with the customer at
# hand; what it says when they come back from their bank settles the attempt.

AUTHENTICATION_FAILED = "authentication_failed"  # a failed check's code, when Stripe gives none
ASKED = "authentication_required"  # the off-session error: the check not tried yet


async def awaiting_customer(conn: AsyncConnection, account_id: str) -> tuple[Due, str] | None:
    """The account's attempt waiting for the customer to authenticate, and its PaymentIntent."""
    query = (
        select(
            _A.id,
            _A.account_id,
            _A.credits,
            _R.customer_id,
            _A.payment_method_id,
            _R.pack,
            _A.payment_intent_id,
        )
        .join(auto_topups, _R.account_id == _A.account_id)
        .where(
            _A.account_id == account_id,
            _A.status == "needs_action",
            _A.payment_intent_id.is_not(None),
            _R.enabled.is_(True),
            _R.state == "needs_action",
        )
        .order_by(_A.created_at.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    *fields, intent_id = row
    return Due(**dict(zip(row._fields[:-1], fields, strict=True))), str(intent_id)


async def attempt_of_intent(conn: AsyncConnection, account_id: str, intent_id: str) -> Due | None:
    """The account's attempt that made PaymentIntent ``intent_id`` (None: not the account's)."""
    query = (
        select(_A.id, _A.account_id, _A.credits, _R.customer_id, _A.payment_method_id, _R.pack)
        .join(auto_topups, _R.account_id == _A.account_id)
        .where(_A.account_id == account_id, _A.payment_intent_id == intent_id)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else Due(**row._mapping)


async def customer_answered(
    conn: AsyncConnection,
    due: Due,
    intent: dict[str, Any],
    settings: Settings,
    policy: Policy,
    now: datetime,
) -> str:
    """Settle an attempt by its PaymentIntent as it stands once the customer is back from
    their bank: ``succeeded`` grants it (once, as the webhook would) and lifts
    ``needs_action``; ``declined`` (the check was tried and failed: the intent wants a
    payment method for another reason than the off-session ``authentication_required``)
    counts as a decline by the rules and lifts ``needs_action`` unless it pauses;
    ``waiting`` leaves everything as it was (not authenticated yet, or still processing)."""
    attempt = await _attempt(conn, due.account_id, due.id)
    status = intent.get("status")
    if status == "succeeded":
        if attempt.status != "succeeded":
            await _grant(conn, attempt, Answer.paid(intent), settings, policy, now)
        await lift_needs_action(conn, due.account_id, policy, now)
        return "succeeded"
    error = intent.get("last_payment_error") or {}
    failed = status == "requires_payment_method" and error.get("code") != ASKED
    if not failed or attempt.status != "needs_action":
        return "declined" if attempt.status == "declined" else "waiting"
    answer = Answer(
        outcome="declined",
        payment_intent_id=str(intent["id"]),
        decline_code=error.get("decline_code") or error.get("code") or AUTHENTICATION_FAILED,
        advice_code=error.get("advice_code"),
    )
    await _declined(conn, due, answer, policy, now)
    rule = await repo.get_rule(conn, due.account_id, lock=True)
    if rule.state == "needs_action":
        await _rule(conn, due.account_id, {"state": "active"}, now)
    return "declined"


async def lift_needs_action(
    conn: AsyncConnection, account_id: str, policy: Policy, now: datetime
) -> None:
    """An auto top-up's PaymentIntent succeeded: a wait for the customer is over
    (``auto_topup.resumed``)."""
    rule = await repo.get_rule(conn, account_id, lock=True)
    if rule is not None and rule.state == "needs_action":
        await service.resume(conn, account_id, "the payment was confirmed", policy, now)
