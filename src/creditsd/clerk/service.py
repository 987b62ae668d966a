"""What each Clerk webhook (delivered by Svix) does to the ledger.

The endpoint verifies and stores; ``handle`` runs in the transaction that marks the
event handled, so a message Svix delivers again is handled once. Clerk's payloads are
read tolerantly: fields nobody here knows stay in the stored event, and a field of an
unexpected shape is treated as absent rather than refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from svix.webhooks import Webhook, WebhookVerificationError

from creditsd.clerk.errors import ClerkNotConfigured
from creditsd.config import ClerkSettings
from creditsd.inbox import Handled
from creditsd.kit.errors import InvalidEvent, InvalidSignature
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import posting
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger.errors import AccountNotFound, InvalidAccountId
from creditsd.ledger.models import check_account_id
from creditsd.ledger.runtime import Runtime
from creditsd.plans.service import grant_allowance

SOURCE = "clerk"
CLERK_APP = "clerk"
EMAIL_KEY = "clerk_email"  # the account metadata key that holds the user's primary email
_SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")

Data = dict[str, Any]


def verify(
    settings: ClerkSettings, payload: bytes, headers: dict[str, str]
) -> tuple[str, str, Data]:
    """A Clerk webhook's Svix message id, event type and event, once its signature checks
    out (stale timestamps fail) and the body is an event (``type`` and ``data``)."""
    secret = settings.webhook_secret
    if secret is None:
        raise ClerkNotConfigured
    signed = {name: headers.get(name, "") for name in _SVIX_HEADERS}
    if not all(signed.values()):
        raise InvalidSignature
    try:
        Webhook(secret.get_secret_value()).verify(payload, signed)
    except WebhookVerificationError as exc:
        raise InvalidSignature from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise InvalidEvent("the body is not JSON") from exc
    if not isinstance(event, dict):
        raise InvalidEvent("the body is not a JSON object")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidEvent("type is missing or not text")
    if not isinstance(event.get("data"), dict):
        raise InvalidEvent("data is missing or not an object")
    return signed["svix-id"], kind, event


async def handle(
    conn: AsyncConnection, kind: str, data: Data, runtime: Runtime, now: datetime
) -> Handled:
    """Dispatch one verified event."""
    policy = runtime.policy
    if kind in {"user.created", "organization.created"}:
        account_id = _id(data)
        created = await posting.open_customer(conn, account_id, policy, now)
        notes: dict[str, Any] = {"account": account_id}
        if kind == "user.created":
            notes["email_kept"] = await _keep_email(conn, account_id, data, now)
        return Handled("created" if created else "exists", notes=notes)
    if kind == "user.updated":
        account_id = _id(data)
        kept = await _keep_email(conn, account_id, data, now)
        name = "unknown_account" if kept is None else "updated"
        return Handled(name, notes={"account": account_id, "email_kept": kept})
    if kind in {"user.deleted", "organization.deleted"}:
        account_id = _id(data)
        if await ledger_repo.get_account_row(conn, account_id) is None:
            return Handled("unknown_account", notes={"account": account_id})
        await ledger_accounts.set_status(
            conn, account_id, "closed", now, actor=CLERK_APP, reason=f"Clerk {kind}"
        )
        return Handled("closed", notes={"account": account_id})
    if kind.startswith(("subscription.", "subscriptionItem.")):
        return await _allowances(conn, kind, data, runtime, now)
    return Handled("ignored")


def _id(data: Data) -> str:
    account_id = data.get("id")
    if not isinstance(account_id, str):
        raise InvalidAccountId(str(account_id))
    return check_account_id(account_id)


def _object(value: Any) -> Data:
    """A JSON object, or an empty one for anything else (a field of an unexpected shape)."""
    return value if isinstance(value, dict) else {}


def _name(value: Any) -> str | None:
    """An id that can name an account, else None (Clerk sends ``""`` for "none")."""
    try:
        return check_account_id(value) if isinstance(value, str) else None
    except InvalidAccountId:
        return None


def _primary_email(user: Data) -> str | None:
    """The address ``primary_email_address_id`` points at among ``email_addresses``."""
    primary = user.get("primary_email_address_id")
    addresses = user.get("email_addresses")
    for address in map(_object, addresses if isinstance(addresses, list) else []):
        email = address.get("email_address")
        if primary and address.get("id") == primary and isinstance(email, str):
            return email
    return None


async def _keep_email(
    conn: AsyncConnection, user_id: str, user: Data, now: datetime
) -> bool | None:
    """Keep the user's primary email in their account's ``clerk_email`` metadata key (no
    primary email: the key goes). False when the metadata cannot hold it; None when the
    user has no account (an update never opens one)."""
    account_id = await ledger_repo.resolve_name(conn, user_id)
    if account_id is None:
        return None
    return await ledger_accounts.set_metadata_key(
        conn, account_id, EMAIL_KEY, _primary_email(user), now
    )


def _ms(value: Any) -> datetime | None:
    """A time Clerk gives in epoch milliseconds, or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


async def _payer_account(
    conn: AsyncConnection, data: Data, policy: posting.Policy, now: datetime
) -> str | None:
    """The account a billing object's payer is: its organization, else its user.

    Clerk's payer id (``cpayer_…``) becomes an alias of that account, so an event in the
    older shape, which names the payer only by ``payer_id``, finds the account too.
    """
    payer = _object(data.get("payer"))
    payer_id = _name(payer.get("id")) or _name(data.get("payer_id"))
    named = _name(payer.get("organization_id")) or _name(payer.get("user_id"))
    if named is None:
        return None if payer_id is None else await ledger_repo.resolve_name(conn, payer_id)
    if payer_id is not None and await ledger_repo.resolve_name(conn, payer_id) is None:
        try:
            account_id = await ledger_accounts.resolve_account(conn, named, policy, now)
        except AccountNotFound:
            return named
        await ledger_accounts.add_alias(conn, account_id, payer_id)
    return named


async def _allowances(
    conn: AsyncConnection, kind: str, data: Data, runtime: Runtime, now: datetime
) -> Handled:
    """Grant each active item's period allowance, for plans ``[plans.*]`` names.

    An item whose period has no end (Clerk's default free plan) grants nothing.
    """
    if kind == "subscription.deleted":
        return Handled("ended", notes={"subscription": data.get("id")})
    account = await _payer_account(conn, data, runtime.policy, now)
    items = data.get("items") if kind.startswith("subscription.") else [data]
    notes: dict[str, Any] = {"account": account, "unknown_plans": [], "open_ended": []}
    outcome = Handled("handled", notes=notes)
    for item in map(_object, items if isinstance(items, list) else []):
        plan_id = _object(item.get("plan")).get("id") or item.get("plan_id")
        if item.get("status") != "active" or not isinstance(plan_id, str) or not plan_id:
            continue
        if plan_id not in runtime.settings.plans:
            notes["unknown_plans"].append(plan_id)
            continue
        start, end = _ms(item.get("period_start")), _ms(item.get("period_end"))
        if start is None or end is None:
            notes["open_ended"].append(plan_id)
            continue
        if not account:
            return Handled("unknown_account", notes=notes)
        credits = runtime.money.to_minor(runtime.settings.plans[plan_id].credits)
        granted = await grant_allowance(
            conn, account, plan_id, credits, (start, end), runtime.policy, now
        )
        if granted is not None:
            outcome.transfers.append(granted.id)
    return outcome
