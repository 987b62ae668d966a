"""Setting an account's auto top-up rule, recording the customer's consent (a saved card),
and reading where it stands. Each function runs in its caller's transaction.

Amounts are minor units of credits, the monthly cap included: it caps the credits bought
in a calendar month (UTC), whatever they cost, so that it reads like every other figure of
the API. Turning auto top-up off takes effect at once: no attempt starts after the
transaction commits (one already sent to Stripe is still granted if it succeeds).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.autotopup import repository as repo
from creditsd.autotopup.errors import InvalidRule, NoAutoTopup
from creditsd.autotopup.models import ACTOR, Attempt, AutoTopup, Card, Consent, Rule, State
from creditsd.inbox import Handled
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import statements
from creditsd.ledger.errors import AccountNotFound
from creditsd.ledger.posting import Policy
from creditsd.stripe.errors import UnknownPack


async def tell(
    conn: AsyncConnection,
    policy: Policy,
    event: str,
    account_id: str,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """A change of an auto top-up's state, told once: the ``auto_topup.<event>`` webhook
    and its audit record, in the change's transaction. ``data`` holds JSON values, amounts
    in minor units (the webhook shows them in credits)."""
    shown = dict(data)
    for name in ("credits",):
        if isinstance(shown.get(name), int):
            shown[name] = policy.money.to_decimal(shown[name])
    if policy.observer is not None:
        sent = await policy.observer.after_event(
            conn, f"auto_topup.{event}", account_id, {"account_id": account_id, **shown}, now
        )
        await statements.queue(conn, sent)
    await audit.record(
        conn,
        actor=ACTOR,
        action=f"auto_topup.{event}",
        target=account_id,
        before=None,
        after=data,
        now=now,
    )


async def resume(
    conn: AsyncConnection, account_id: str, why: str, policy: Policy, now: datetime
) -> bool:
    """Lift a pause or a wait for the customer (a new card, a manual purchase that went
    through): ``auto_topup.resumed``; whether there was one to lift."""
    row = await repo.get_rule(conn, account_id, lock=True)
    if row is None or row.state == "active":
        return False
    state = {"state": "active", "paused_reason": None, "consecutive_declines": 0}
    await repo.update_rule(conn, account_id, {**state, "next_attempt_at": None, "updated_at": now})
    await repo.arm(conn, account_id)
    await tell(conn, policy, "resumed", account_id, {"was": row.state, "because": why}, now)
    return True


def check_rule(rule: Rule, packs: Collection[str]) -> None:
    """Refuse a rule that cannot work: a target at or below the threshold, both or neither
    of a target and a pack, a pack not on sale."""
    if (rule.target_balance is None) == (rule.pack is None):
        raise InvalidRule("give exactly one of target_balance and pack", "target_balance")
    if rule.target_balance is not None and rule.target_balance <= rule.threshold:
        raise InvalidRule("target_balance must be above threshold", "target_balance")
    if rule.pack is not None and rule.pack not in packs:
        raise UnknownPack(rule.pack, sorted(packs))
    if rule.monthly_cap <= 0:
        raise InvalidRule("monthly_cap must be above zero", "monthly_cap")


async def put_rule(
    conn: AsyncConnection,
    name: str,
    rule: Rule,
    packs: Collection[str],
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> AutoTopup:
    """Set an account's rule (audited ``auto_topup.updated``); the state it leaves."""
    check_rule(rule, packs)
    account_id = await ledger_accounts.resolve_account(conn, name, policy, now)
    row = await repo.get_rule(conn, account_id, lock=True)
    if row is None:
        values = {**rule.stored(), "account_id": account_id, "state": "active"}
        await repo.insert_rule(conn, {**values, "created_at": now, "updated_at": now})
        before = None
    else:
        before = _rule_of(row).stored()
        await repo.update_rule(conn, account_id, {**rule.stored(), "updated_at": now})
    await repo.arm(conn, account_id)
    await audit.record(
        conn,
        actor=actor,
        action="auto_topup.updated",
        target=account_id,
        before=before,
        after=rule.stored(),
        now=now,
    )
    return await _state(conn, account_id, now)


async def turn_off(
    conn: AsyncConnection, name: str, now: datetime, *, actor: str
) -> tuple[AutoTopup, bool]:
    """Turn an account's auto top-up off at once, its rule and card kept (audited
    ``auto_topup.updated``, as a rule put with ``enabled: false`` is); the state it leaves,
    and whether it was on. Turning it on again is the rule's owner's to do (an app, with
    the customer's consent)."""
    account_id = await ledger_repo.resolve_name(conn, name)
    if account_id is None:
        raise AccountNotFound(name)
    row = await repo.get_rule(conn, account_id, lock=True)
    if row is None:
        raise NoAutoTopup(account_id)
    was_on = bool(row.enabled)
    if was_on:
        before = _rule_of(row)
        await repo.update_rule(conn, account_id, {"enabled": False, "updated_at": now})
        await repo.arm(conn, account_id)
        await audit.record(
            conn,
            actor=actor,
            action="auto_topup.updated",
            target=account_id,
            before=before.stored(),
            after=replace(before, enabled=False).stored(),
            now=now,
        )
    return await _state(conn, account_id, now), was_on


async def record_consent(
    conn: AsyncConnection, account_id: str, card: Card, actor: str, policy: Policy, now: datetime
) -> AutoTopup:
    """Remember the card the customer saved for auto top-up, with who agreed, when and to
    which rule (audited ``auto_topup.consented``). A new card lifts a pause and clears the
    declines counted against the old one."""
    row = await repo.get_rule(conn, account_id, lock=True)
    if row is None:
        raise NoAutoTopup(account_id)
    consent = {
        "customer_id": card.customer_id,
        "payment_method_id": card.payment_method_id,
        "card_fingerprint": card.fingerprint,
        "card_last4": card.last4,
        "card_brand": card.brand,
        "consented_by": actor,
        "consented_at": now,
        "consented_rule": _rule_of(row).stored(),
    }
    fresh = {"consecutive_declines": 0, "next_attempt_at": None, "updated_at": now}
    await repo.update_rule(conn, account_id, {**consent, **fresh})
    await resume(conn, account_id, "a new card was saved", policy, now)
    await repo.arm(conn, account_id)
    before = {"payment_method_id": row.payment_method_id, "state": row.state}
    shown = {**consent, "consented_at": now.isoformat()}
    await audit.record(
        conn,
        actor=actor,
        action="auto_topup.consented",
        target=account_id,
        before=before,
        after=shown,
        now=now,
    )
    return await _state(conn, account_id, now)


async def card_saved(
    conn: AsyncConnection,
    session: dict[str, Any],
    card: Card | None,
    policy: Policy,
    now: datetime,
) -> Handled:
    """``checkout.session.completed`` in ``setup`` mode: the consent the customer gave by
    saving ``card`` (as Stripe reported it), for the account the session was made for. A
    session creditsd did not start for auto top-up, or for an account with no rule, saves
    nothing."""
    metadata = session.get("metadata") or {}
    notes: dict[str, Any] = {"session": session.get("id")}
    if metadata.get("creditsd_purpose") != "auto_topup":
        return Handled("not_an_auto_topup_card", notes=notes)
    account_id = await ledger_repo.resolve_name(conn, str(metadata.get("creditsd_account")))
    if account_id is None or await repo.get_rule(conn, account_id) is None:
        return Handled("unknown_account", notes=notes)
    if card is None:
        return Handled("no_card_saved", notes=notes)
    actor = f"{metadata.get('creditsd_app') or 'stripe'} (checkout {session.get('id')})"
    await record_consent(conn, account_id, card, actor, policy, now)
    return Handled("card_saved", notes={**notes, "payment_method": card.payment_method_id})


async def get_auto_topup(conn: AsyncConnection, name: str, now: datetime) -> AutoTopup:
    """An account's auto top-up: its rule, card, state and this month's total."""
    account_id = await ledger_repo.resolve_name(conn, name)
    if account_id is None:
        raise AccountNotFound(name)
    return await _state(conn, account_id, now)


def month_start(now: datetime) -> datetime:
    """The start of the calendar month (UTC) the monthly cap counts."""
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _rule_of(row: Any) -> Rule:
    return Rule(
        enabled=row.enabled,
        threshold=row.threshold,
        target_balance=row.target_balance,
        pack=row.pack,
        monthly_cap=row.monthly_cap,
    )


def _shown_state(row: Any) -> State:
    """``off`` when disabled, ``awaiting_card`` until a card is saved, else the stored
    state (active, paused, needs_action)."""
    if not row.enabled:
        return "off"
    if row.payment_method_id is None:
        return "awaiting_card"
    stored: State = row.state
    return stored


def _consent_of(row: Any) -> Consent | None:
    if row.payment_method_id is None:
        return None
    card = Card(
        customer_id=row.customer_id,
        payment_method_id=row.payment_method_id,
        fingerprint=row.card_fingerprint,
        last4=row.card_last4,
        brand=row.card_brand,
    )
    return Consent(card=card, by=row.consented_by, at=row.consented_at, rule=row.consented_rule)


async def _state(conn: AsyncConnection, account_id: str, now: datetime) -> AutoTopup:
    row = await repo.get_rule(conn, account_id)
    if row is None:
        raise NoAutoTopup(account_id)
    latest = await repo.latest_attempt(conn, account_id)
    last = None
    if latest is not None:
        last = Attempt(
            id=latest.id,
            status=latest.status,
            credits=latest.credits,
            payment_intent_id=latest.payment_intent_id,
            decline_code=latest.decline_code,
            created_at=latest.created_at,
            updated_at=latest.updated_at,
        )
    return AutoTopup(
        account_id=account_id,
        rule=_rule_of(row),
        state=_shown_state(row),
        paused_reason=row.paused_reason,
        consecutive_declines=row.consecutive_declines,
        next_attempt_at=row.next_attempt_at,
        consent=_consent_of(row),
        last_attempt=last,
        month_total=await repo.bought_since(conn, account_id, month_start(now)),
    )
