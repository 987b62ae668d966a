"""What the audit log holds, and how a reader narrows it down."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One admin action: who (``actor``) did what (``action``) to which ``target``, with
    the state before and after as recorded (amounts in them are minor units)."""

    id: int
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Records to show: each field set must match exactly; ``[since, until)`` in time."""

    target: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
