"""The commands the posting engine takes: every credit movement is one of them.

A command is a small frozen dataclass that says what a write asks. Its fingerprint is
computed by :func:`~creditsd.kit.idempotency.fingerprint_of` from the fields it declares
asked (the engine does this, once per command, when it claims the command's idempotency
key); fields marked ``not_asked`` say how the write is carried out, not what it asks.

- :class:`Movement`: a transfer from one account to another (a charge, a grant, an
  adjustment, a purchase, a refund, a usage charge, a plan's allowance);
- :class:`OpenHold`, :class:`CaptureHold`, :class:`ReleaseHold`, :class:`ExtendHold`:
  the two-phase transfer a hold is (reserve, then charge what the work cost);
- :class:`Sweep`: tidy an account (close its expired holds, lapse its lots past expiry).

The services build them (a :class:`~creditsd.ledger.service.Charge` is a movement to
``@revenue``); :func:`creditsd.ledger.posting.post` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from creditsd.kit.idempotency import asked_as_items, asked_if_given, not_asked
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import Metadata, check_account_id


def _lot_request(lot: LotSpec) -> Metadata:
    expires_at = None if lot.expires_at is None else lot.expires_at.isoformat()
    return {"source": lot.source, "expires_at": expires_at, "priority": lot.priority}


@dataclass(frozen=True, slots=True, kw_only=True)
class Movement:
    """A transfer asked for: ``amount`` from the debit account to the credit account, as
    a ``kind`` of transfer (its operation). Either side may be an alias.

    A priced amount is asked as the ``use`` it was priced from, so a replay matches even
    after the catalog changed. ``fresh_key``: nothing can be stored under the key (minted
    for this request, or claimed already in this transaction), so the engine does not
    look; the insert's unique key still catches a concurrent claim. ``system``: creditsd's
    own debit, taken whatever the account's status; ``forced``: taken even past what the
    account can spend (the rest is debt); ``first_lot``: the lot a debit spends first (a
    refund's purchase)."""

    kind: str = not_asked()
    debit_account_id: str
    credit_account_id: str
    amount: int
    app: str = not_asked()
    idempotency_key: str = not_asked()
    description: str | None = None
    metadata: Metadata | None = None
    use: Metadata | None = asked_as_items(instead_of="amount", default=None)
    lot: LotSpec | None = asked_if_given(_lot_request, default=None)
    pricing: Metadata | None = not_asked(default=None)
    fresh_key: bool = not_asked(default=False)
    system: bool = not_asked(default=False)
    forced: bool = not_asked(default=False)
    first_lot: str | None = not_asked(default=None)
    member: str | None = asked_if_given(default=None)  # the wallet's member it is for

    @property
    def operation(self) -> str:
        """The kind of transfer."""
        return self.kind


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenHold:
    """A hold asked for: ``amount`` of the account's available credits reserved for
    ``expires_in`` seconds (a pending transfer). A priced estimate carries its breakdown
    (``pricing``) and the ``use`` it was priced from, asked in place of the amount;
    ``proxy_key_id`` names the proxy key that pays (within its limit); ``fresh_key``: as
    a :class:`Movement`'s. The service checks ``expires_in`` against its maximum."""

    operation: ClassVar[str] = "hold"
    account_id: str
    amount: int
    expires_in: int
    app: str = not_asked()
    idempotency_key: str = not_asked()
    description: str | None = None
    metadata: Metadata | None = None
    use: Metadata | None = asked_as_items(instead_of="amount", default=None)
    proxy_key_id: str | None = asked_if_given(default=None)
    member: str | None = asked_if_given(default=None)  # the wallet's member it is for
    pricing: Metadata | None = not_asked(default=None)
    fresh_key: bool = not_asked(default=False)

    def __post_init__(self) -> None:
        check_account_id(self.account_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureHold:
    """Charge what a hold's work cost against it (posting the pending transfer).

    A final capture settles the hold and gives back what it still reserves; past the hold
    it charges the difference when the account (and the proxy key paying) can afford it,
    else ``overrun`` says: ``"cap"`` charges what can be paid and records the rest as
    uncollected, ``"refuse"`` is 402. One with ``final=False`` takes a slice, at most what
    the hold still reserves. A priced amount carries its breakdown and the ``use`` it was
    priced from, asked in place of the amount. ``finished_at``: when the work ended, for a
    capture that a database outage delayed; a hold that was still open then is captured
    even if it expired since. Description and metadata default to the hold's.
    """

    operation: ClassVar[str] = "capture"
    hold_id: str
    amount: int
    app: str = not_asked()
    idempotency_key: str = not_asked()
    final: bool = True
    overrun: str = not_asked(default="cap")
    description: str | None = None
    metadata: Metadata | None = None
    use: Metadata | None = asked_as_items(instead_of="amount", default=None)
    pricing: Metadata | None = not_asked(default=None)
    finished_at: datetime | None = not_asked(default=None)


@dataclass(frozen=True, slots=True)
class ReleaseHold:
    """Give back what a hold reserves; a released or expired hold is left as it is."""

    hold_id: str


@dataclass(frozen=True, slots=True)
class ExtendHold:
    """Push an open hold's expiry to ``expires_in`` seconds from when it is written (a
    heartbeat). The service checks ``expires_in`` against its maximum."""

    hold_id: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class Sweep:
    """Tidy an account: close its expired holds, lapse its lots past expiry."""

    account_id: str


HoldCommand = CaptureHold | ReleaseHold | ExtendHold
Command = Movement | OpenHold | CaptureHold | ReleaseHold | ExtendHold | Sweep
