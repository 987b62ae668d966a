"""``GET /v1/audit-log`` (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from creditsd.api.auth import AdminKey, LedgerDep
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import Cursor, Limit, respond
from creditsd.api.schemas.audit import AuditRecordOut, AuditRecordPage
from creditsd.audit import service
from creditsd.audit.models import AuditFilter
from creditsd.kit.fields import NoNul

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, tags=["audit"])


def _exactly(length: int, what: str) -> object:
    return Query(max_length=length, description=f"Only records whose {what} is exactly this.")


def _instant(description: str) -> object:
    return Query(description=f"{description} (RFC 3339 with an offset, e.g. 2026-11-01T00:00:00Z).")


async def audit_filter(
    target: Annotated[Annotated[str, NoNul] | None, _exactly(255, "target")] = None,
    actor: Annotated[Annotated[str, NoNul] | None, _exactly(128, "actor")] = None,
    action: Annotated[Annotated[str, NoNul] | None, _exactly(64, "action")] = None,
    since: Annotated[AwareDatetime | None, _instant("From this moment, inclusive")] = None,
    until: Annotated[AwareDatetime | None, _instant("Before this moment")] = None,
) -> AuditFilter:
    """The records a listing asks for, from its query."""
    return AuditFilter(target=target, actor=actor, action=action, since=since, until=until)


@router.get("/audit-log", response_model=AuditRecordPage, responses=error_responses(403))
async def list_audit_log(
    ledger: LedgerDep,
    _key: AdminKey,
    wanted: Annotated[AuditFilter, Depends(audit_filter)],
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ExactJSONResponse:
    """What operators, apps and creditsd itself did (grants, freezes, keys, pricing,
    Stripe's refunds, reconciliation…), newest first; reading changes nothing."""
    page = await ledger.database.read(
        lambda conn, _now: service.list_records(conn, wanted, limit=limit, cursor=cursor)
    )
    return respond(
        AuditRecordPage(
            data=[AuditRecordOut.of(record.in_credits(ledger.money)) for record in page.items],
            next_cursor=page.next_cursor,
        )
    )
