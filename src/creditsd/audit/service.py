"""Reading the audit log a page at a time."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as repo
from creditsd.audit.models import AuditFilter, AuditRecord
from creditsd.kit.errors import InvalidRequest
from creditsd.kit.pagination import Page, decode_id_cursor, encode_cursor


async def list_records(
    conn: AsyncConnection, wanted: AuditFilter, *, limit: int, cursor: str | None = None
) -> Page[AuditRecord]:
    """One page of the records that match ``wanted``, newest first."""
    if wanted.since is not None and wanted.until is not None and wanted.since >= wanted.until:
        raise InvalidRequest("since must be earlier than until")
    found = await repo.records(conn, wanted, before=decode_id_cursor(cursor), limit=limit + 1)
    page = found[:limit]
    return Page(page, encode_cursor(str(page[-1].id)) if len(found) > limit else None)
