"""What the audit log holds, and how a reader narrows it down."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from creditsd.kit.money import Money

# Figures audit records hold in minor units, shown in credits by every reader; ``lots``
# maps each lot's id to what remains of it, ``carried`` each spend limit's id to what its
# window had spent when the account's time zone changed.
_AMOUNTS = frozenset(
    {
        "balance",
        "held",
        "debt",
        "overdraft_limit",
        "low_balance_threshold",
        "spend_limit",
        "threshold",
        "target_balance",
        "monthly_cap",
    }
)
_AMOUNTS_BY_ID = frozenset({"lots", "carried"})


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited action (an operator's, an app's, or creditsd's own): who (``actor``)
    did what (``action``) to which ``target``, with the state before and after as recorded
    (amounts in minor units; see :meth:`in_credits`)."""

    id: int
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime

    def in_credits(self, money: Money) -> AuditRecord:
        """The record with its amounts in credits, as readers are shown it."""
        return replace(
            self, before=_in_credits(self.before, money), after=_in_credits(self.after, money)
        )


def _in_credits(state: dict[str, Any] | None, money: Money) -> dict[str, Any] | None:
    if state is None:
        return None
    shown = dict(state)
    for name, value in state.items():
        if name in _AMOUNTS and isinstance(value, int):
            shown[name] = money.to_decimal(value)
        elif name in _AMOUNTS_BY_ID and isinstance(value, dict):
            shown[name] = {k: money.to_decimal(v) for k, v in value.items()}
    return shown


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Records to show: each field set must match exactly; ``[since, until)`` in time."""

    target: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
