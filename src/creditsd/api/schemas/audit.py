"""Response bodies of ``GET /v1/audit-log``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from creditsd.audit.models import AuditRecord

_EXAMPLE: JsonDict = {
    "id": 42,
    "actor": "key:key_01jd6x2v8kq3m0c7r5t9w4h2ab:billing",
    "action": "grant",
    "target": "user_2abc",
    "before": {"balance": 0},
    "after": {"balance": 100, "transfer_id": "tr_01jd6x3a7f2k9p4q8r6s0t1v3w"},
    "created_at": "2026-11-22T10:00:00.000000Z",
}


class AuditRecordOut(BaseModel):
    """One audited action (an operator's, an app's, or creditsd's own), as recorded in the
    transaction that made the change."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: int = Field(description="Increases with every record.")
    actor: str = Field(
        description="Who: `key:<id>:<name>` for an API key, `cli:<user>` for the command "
        "line, or creditsd's own (`stripe`, `clerk`, `creditsd`, `sighup`)."
    )
    action: str = Field(description="What: `grant`, `account.frozen`, `key.create`, …")
    target: str = Field(description="To what: an account id, a key id, `pricing`, …")
    before: dict[str, Any] | None = Field(
        description="The state before, as recorded; amounts in credits."
    )
    after: dict[str, Any] | None = Field(
        description="The state after, as recorded; amounts in credits."
    )
    created_at: datetime

    @classmethod
    def of(cls, record: AuditRecord) -> AuditRecordOut:
        """Render a record."""
        return cls(
            id=record.id,
            actor=record.actor,
            action=record.action,
            target=record.target,
            before=record.before,
            after=record.after,
            created_at=record.created_at,
        )


class AuditRecordPage(BaseModel):
    """A page of audit records, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_EXAMPLE], "next_cursor": "NDE"}]}
    )

    data: list[AuditRecordOut]
    next_cursor: str | None
