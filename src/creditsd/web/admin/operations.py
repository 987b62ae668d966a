"""The console's operations: reconciliation of stored figures, and the audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from creditsd.api.auth import ledger_of
from creditsd.audit import service as audit_service
from creditsd.audit.models import AuditFilter
from creditsd.kit import jsonio
from creditsd.stripe.reconcile import reconcile as reconcile_stripe
from creditsd.web.admin.console import (
    PAGE_SIZE,
    SECTION,
    AdminRoute,
    Posted,
    Signed,
    done,
    render,
    typed,
)
from creditsd.web.pages import (
    credits,
)

router = APIRouter(route_class=AdminRoute)


# Reconciliation


@router.get("/reconcile")
async def reconcile(request: Request, op: Signed) -> Response:
    """Every account checked against its transfers, and Stripe's events against the ledger."""
    ledger = ledger_of(request)
    checked, drifted = 0, []
    async for found in ledger.verify_all():
        checked += len(found)
        drifted += [verification for verification in found if not verification.valid]
    now = ledger.now()
    stripe = await ledger.database.read(lambda conn, _now: reconcile_stripe(conn, now))
    return await render(
        request,
        op,
        "reconcile.html",
        checked=checked,
        drifted=drifted,
        total=await ledger.ledger_total(),
        stripe=stripe,
    )


@router.post("/reconcile/{account_id}/repair")
async def repair(request: Request, posted: Posted, account_id: str) -> Response:
    """Rebuild one account's stored figures from its transfers (audited)."""
    ledger = ledger_of(request)
    before = await ledger.rebuild_account(account_id, actor=posted.operator.actor)
    money = ledger.money
    return await done(
        request,
        f"/{SECTION}/reconcile",
        f"Rebuilt {before.account_id} from its transfers: its balance was "
        f"{credits(money.to_decimal(before.stored_balance))}, it is "
        f"{credits(money.to_decimal(before.calculated_balance))}.",
    )


# The audit log


@router.get("/audit")
async def audit_log(
    request: Request,
    op: Signed,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
) -> Response:
    """What operators and apps did, newest first; narrowed by target, actor or action."""
    ledger = ledger_of(request)
    wanted = AuditFilter(
        target=typed(target, 255) or None,
        actor=typed(actor, 128) or None,
        action=typed(action, 64) or None,
    )
    found = await ledger.database.read(
        lambda conn, _now: audit_service.list_records(conn, wanted, limit=PAGE_SIZE, cursor=cursor)
    )
    return await render(
        request,
        op,
        "audit.html",
        records=[record.in_credits(ledger.money) for record in found.items],
        next_cursor=found.next_cursor,
        wanted=wanted,
        described=_described,
    )


def _described(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """An audit record's states as lines: ``balance: 3 → 103``, ``transfer_id: tr_1``."""
    before, after = before or {}, after or {}
    lines = []
    for name in dict.fromkeys([*before, *after]):
        if name not in after:
            lines.append(f"{name}: {_shown(before[name])} before")
        elif name in before and before[name] != after[name]:
            lines.append(f"{name}: {_shown(before[name])} → {_shown(after[name])}")
        else:
            lines.append(f"{name}: {_shown(after[name])}")
    return lines


def _shown(value: object) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else jsonio.dumps(value)
