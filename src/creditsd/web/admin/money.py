"""The console's money pages: the price catalog's versions, and the transfers' export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

import simplejson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from creditsd.api.auth import ledger_of
from creditsd.kit import jsonio
from creditsd.kit.errors import NotFound
from creditsd.ledger import export
from creditsd.pricing import repository as pricing_repo
from creditsd.pricing import service as pricing_service
from creditsd.web.admin.console import (
    PAGE_SIZE,
    AdminRoute,
    Signed,
    audited,
    bad,
    render,
)
from creditsd.web.pages import (
    PAGE_HEADERS,
)

CATALOG_VERSION_MAX = 2**31 - 1  # the column is a 32-bit integer

router = APIRouter(route_class=AdminRoute)


# Pricing


@router.get("/pricing")
async def pricing(request: Request, op: Signed, cursor: str | None = None) -> Response:
    """The published price catalog versions, newest first."""
    ledger = ledger_of(request)
    found = await ledger.database.read(
        lambda conn, _now: pricing_service.versions(conn, limit=PAGE_SIZE, cursor=cursor)
    )
    return await render(
        request,
        op,
        "pricing.html",
        versions=found.items,
        current=(await ledger.catalog()).version,
        next_cursor=found.next_cursor,
    )


@router.get("/pricing/{version}")
async def pricing_version(
    request: Request,
    op: Signed,
    version: Annotated[int, Path(ge=1, le=CATALOG_VERSION_MAX)],
    against: Annotated[int | None, Query(ge=1, le=CATALOG_VERSION_MAX)] = None,
) -> Response:
    """One catalog version: what changed from another (by default the one before), and
    its whole content."""
    ledger = ledger_of(request)
    compared = version - 1 if against is None else against

    async def read(conn: Any, _now: datetime) -> tuple[Any, Any]:
        return (
            await pricing_repo.get_version(conn, version),
            await pricing_repo.get_version(conn, compared) if compared >= 1 else None,
        )

    shown, other = await ledger.database.read(read)
    if shown is None:
        raise NotFound(f"there is no catalog version {version}")
    if against is not None and other is None:
        raise NotFound(f"there is no catalog version {against}")
    before = {} if other is None else other.catalog
    return await render(
        request,
        op,
        "pricing_version.html",
        version=shown,
        compared=None if other is None else other.version,
        changes=pricing_service.changes(before, shown.catalog),
        content=simplejson.dumps(
            jsonio.loads(jsonio.dumps(shown.catalog)), indent=2, sort_keys=True, use_decimal=True
        ),
    )


# Export


@router.get("/export")
async def export_form(request: Request, op: Signed) -> Response:
    """The form that downloads a period's transactions as CSV."""
    today = ledger_of(request).now().date()
    return await render(
        request, op, "export.html", start=today.replace(day=1).isoformat(), end=today.isoformat()
    )


@router.get("/export/transactions.csv")
async def export_csv(request: Request, op: Signed, start: str = "", end: str = "") -> Response:
    """Every transfer made from the first day to the last (both whole UTC days), as CSV,
    written as it is read. A period to the last day there is (9999-12-31) has no end."""
    ledger = ledger_of(request)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        problem = "Choose both days of the period."
    else:
        problem = "The period must end on or after its first day." if last < first else ""
    if problem:
        return await render(request, op, "export.html", 422, [bad(problem)], start=start, end=end)
    since = datetime.combine(first, time(), UTC)
    until = None if last == date.max else datetime.combine(last + timedelta(days=1), time(), UTC)
    period = {"start": first.isoformat(), "end": last.isoformat()}
    await ledger.database.write(
        lambda conn, now: audited(conn, op.key, "export.transactions", period, now)
    )

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(export.COLUMNS)
        async for found in ledger.export_transfers(since, until):
            writer.writerows(export.row(transfer, ledger.money) for transfer in found)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    name = f"transactions-{first.isoformat()}-to-{last.isoformat()}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )
