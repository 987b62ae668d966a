"""What reconciliation finds and keeps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Every invariant checked, by the stable name used as the metric label and in alerts.
BALANCE_MATCHES_TRANSFERS = "balance_matches_transfers"
HELD_MATCHES_HOLDS = "held_matches_holds"
LOTS_MATCH_BALANCE = "lots_match_balance"
HOLD_PAST_EXPIRY = "hold_past_expiry"
CAPTURED_OVER_AMOUNT = "captured_over_amount"
ONE_GRANT_PER_PAYMENT = "one_grant_per_payment"
ONE_GRANT_PER_PERIOD = "one_grant_per_period"
OUTBOX_OVERDUE = "outbox_overdue"
CHECKPOINT_CHAIN = "checkpoint_chain"
INVARIANTS = (
    BALANCE_MATCHES_TRANSFERS,
    HELD_MATCHES_HOLDS,
    LOTS_MATCH_BALANCE,
    HOLD_PAST_EXPIRY,
    CAPTURED_OVER_AMOUNT,
    ONE_GRANT_PER_PAYMENT,
    ONE_GRANT_PER_PERIOD,
    OUTBOX_OVERDUE,
    CHECKPOINT_CHAIN,
)
# The invariants of one customer account: their subject is the account's id.
ACCOUNT_INVARIANTS = frozenset({BALANCE_MATCHES_TRANSFERS, HELD_MATCHES_HOLDS, LOTS_MATCH_BALANCE})


@dataclass(frozen=True, slots=True, order=True)
class Violation:
    """One broken promise: which invariant, about what (an account, hold, payment, outbox
    message or transfer id), and what was found."""

    invariant: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class Drift:
    """A violation as reconciliation recorded it: open until it is found gone or repaired."""

    id: str
    invariant: str
    subject: str
    detail: str
    detected_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A link of the chain: the transfers created before ``until`` (and at or after the
    previous link's), how many, their amounts summed, and the chained digest."""

    number: int
    version: int
    until: datetime
    transfers: int
    total: int
    digest: str


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where the chain stopped matching: the checkpoint, and the transfer when one is to
    blame (None when the checkpoint's own record was changed)."""

    checkpoint: int
    transfer_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The checkpoint chain re-derived: where it broke (None: whole), its head, and how
    many transfers it covers."""

    broken: ChainBreak | None
    head: Checkpoint | None
    transfers: int


@dataclass(frozen=True, slots=True)
class JobState:
    """How the scheduled reconciliation last went, for the metrics."""

    last_success_at: datetime | None
    last_duration_ms: int | None


@dataclass(frozen=True, slots=True)
class Health:
    """The integrity figures a scrape shows: drifts ever found and still open per
    invariant, holds past their expiry, and the last run."""

    found: dict[str, int]
    open: dict[str, int]
    holds_overdue: int
    job: JobState
