"""What each Clerk webhook (delivered by Svix) does to the ledger.

The endpoint verifies and stores; ``handle`` runs in the transaction that marks the
event handled, so a message Svix delivers again is handled once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from svix.webhooks import Webhook, WebhookVerificationError

from creditsd.clerk.errors import ClerkNotConfigured
from creditsd.config import ClerkSettings
from creditsd.errors import InvalidSignature
from creditsd.inbox import Outcome
from creditsd.ledger import posting
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger
from creditsd.ledger.errors import InvalidAccountId
from creditsd.ledger.runtime import Runtime
from creditsd.plans.service import grant_allowance

SOURCE = "clerk"
CLERK_APP = "clerk"
_SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")

Data = dict[str, Any]


def verify(
    settings: ClerkSettings, payload: bytes, headers: dict[str, str]
) -> tuple[str, str, Data]:
    """A Clerk webhook's Svix message id, event type and event, once its signature checks
    out (stale timestamps fail)."""
    secret = settings.webhook_secret
    if secret is None:
        raise ClerkNotConfigured
    signed = {name: headers.get(name, "") for name in _SVIX_HEADERS}
    if not all(signed.values()):
        raise InvalidSignature
    try:
        Webhook(secret.get_secret_value()).verify(payload, signed)
        event = json.loads(payload)
        kind, _data = str(event["type"]), event["data"]
    except (WebhookVerificationError, ValueError, KeyError, TypeError) as exc:
        raise InvalidSignature from exc
    return signed["svix-id"], kind, event


async def handle(
    conn: AsyncConnection, kind: str, data: Data, ledger_: Runtime, now: datetime
) -> Outcome:
    """Dispatch one verified event."""
    policy = ledger_.policy
    if kind in {"user.created", "organization.created"}:
        created = await posting.open_customer(conn, _id(data), policy, now)
        return Outcome("created" if created else "exists", notes={"account": data.get("id")})
    if kind in {"user.deleted", "organization.deleted"}:
        account_id = _id(data)
        if await ledger_repo.get_account_row(conn, account_id) is None:
            return Outcome("unknown_account", notes={"account": account_id})
        await ledger.set_status(
            conn, account_id, "closed", now, actor=CLERK_APP, reason=f"Clerk {kind}"
        )
        return Outcome("closed", notes={"account": account_id})
    if kind.startswith(("subscription.", "subscriptionItem.")):
        return await _allowances(conn, kind, data, ledger_, now)
    return Outcome("ignored")


def _id(data: Data) -> str:
    account_id = data.get("id")
    if not isinstance(account_id, str):
        raise InvalidAccountId(str(account_id))
    return ledger.check_account_id(account_id)


def _ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


async def _allowances(
    conn: AsyncConnection, kind: str, data: Data, ledger_: Runtime, now: datetime
) -> Outcome:
    """Grant each active item's period allowance, for plans ``[plans.*]`` names."""
    if kind == "subscription.deleted":
        return Outcome("ended", notes={"subscription": data.get("id")})
    payer = data.get("payer") or {}
    account = payer.get("organization_id") or payer.get("user_id")
    items = data.get("items") if kind.startswith("subscription.") else [data]
    outcome = Outcome("handled", notes={"account": account, "unknown_plans": []})
    for item in items or []:
        plan = item.get("plan") or {}
        plan_id = plan.get("id") or item.get("plan_id")
        if item.get("status") != "active" or not plan_id:
            continue
        if plan_id not in ledger_.settings.plans:
            outcome.notes["unknown_plans"].append(plan_id)
            continue
        if not account:
            return Outcome("unknown_account", notes=outcome.notes)
        credits = ledger_.money.to_minor(ledger_.settings.plans[plan_id].credits)
        period = (_ms(item["period_start"]), _ms(item["period_end"]))
        granted = await grant_allowance(
            conn, account, plan_id, credits, period, ledger_.policy, now
        )
        if granted is not None:
            outcome.transfers.append(granted.id)
    return outcome
