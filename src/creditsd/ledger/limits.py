"""Spend limits, as a batch of the posting engine applies them.

A limit caps what one subject spends from an account in a period: the account itself
(``wallet``), one of its members (``member``), an app key's app (``app``), a proxy key
(``key``). What counts is spend, the debits that pay for work (charges, captures, and a
gateway's usage), plus what the subject's open holds reserve: a hold counts while it is
open, its capture moves what it charged from held to spent, its release or expiry gives
it back. Corrections and creditsd's own debits (adjustments, expiries, clawbacks,
syncs) are not spend.

Spend is counted per window (:mod:`creditsd.ledger.windows`) in the account's time zone,
in a counter keyed by the window's start: the first spend of a new window starts a new
counter, so no job resets anything. The engine holds the account's lock while it checks
and counts, so concurrent writes never take spent + held past a hard limit; a forced
debit (the gateway's usage: the work was done) is counted but never refused. A ``soft``
limit refuses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from creditsd.kit.errors import CreditsError, NotFound
from creditsd.ledger.errors import Units
from creditsd.ledger.windows import Period, Window, calendar_window, since_set

SPEND_KINDS = frozenset({"charge", "capture"})  # the debits a limit counts
Scope = Literal["wallet", "member", "app", "key"]
Mode = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """A cap on what ``subject`` (of ``scope``) spends from an account per ``period``;
    no window starts before ``since`` (when it was set: a changed limit starts afresh)."""

    id: str
    account_id: str
    scope: Scope
    subject: str  # the member's id, the app's name, the proxy key's id; '' for the wallet
    period: Period
    amount: int
    mode: Mode
    since: datetime

    def window(self, zone: ZoneInfo, now: datetime) -> Window:
        """The window that holds ``now`` in ``zone`` (from ``since``, should the limit be
        set later, by a process whose clock runs a little ahead)."""
        return since_set(calendar_window(self.period, now, zone), self.since)


@dataclass(frozen=True, slots=True)
class Spender:
    """Who a debit or hold is for: the subjects whose limits it counts against."""

    member: str | None
    app: str
    key: str | None

    def subjects(self) -> list[tuple[str, str]]:
        """The ``(scope, subject)`` pairs this spender's debits count against."""
        found = [("wallet", ""), ("app", self.app)]
        if self.member is not None:
            found.append(("member", self.member))
        if self.key is not None:
            found.append(("key", self.key))
        return found


class LimitReached(CreditsError):
    """A hard spend limit leaves less than the write needs: ``required`` is more than
    ``remaining`` of its current window, which ends at ``resets_at`` (None: never)."""

    code = "limit_reached"
    status = 402

    def __init__(self, tally: Tally, required: int) -> None:
        limit = tally.limit
        super().__init__(
            f"this would take the {limit.scope} past its {limit.period} spend limit",
            limit_source=limit.scope,
            period=limit.period,
            limit=Units(limit.amount),
            remaining=Units(max(tally.left(), 0)),
            resets_at=tally.window.end,
            required=Units(required),
        )


class MemberNotFound(NotFound):
    """The account has no member of this id."""

    code = "member_not_found"

    def __init__(self, account_id: str, member_id: str) -> None:
        super().__init__(
            f"account {account_id} has no member {member_id!r}",
            account_id=account_id,
            member_id=member_id,
        )


@dataclass(slots=True)
class Tally:
    """One limit in a batch: its current window and what is spent and held against it."""

    limit: SpendLimit
    window: Window
    spent: int  # in the window, this batch's spend included
    held: int  # what the subject's open holds reserve, as this batch leaves them
    read: int  # ``spent`` as read: the batch writes the difference
    warned: int = 0  # the highest percentage of the limit a ``limit.warning`` told of

    def left(self) -> int:
        return self.limit.amount - self.spent - self.held

    def crossed(self, percentages: Sequence[int]) -> int | None:
        """The highest of ``percentages`` of the limit that the window's spend has reached
        and no warning told of yet (None: none)."""
        reached = [
            percent
            for percent in percentages
            if percent > self.warned and self.spent * 100 >= percent * self.limit.amount
        ]
        return max(reached, default=None)


@dataclass(slots=True)
class AccountLimits:
    """An account's members and limits, as a batch that holds its lock sees them."""

    account_id: str
    members: set[str]
    tallies: list[Tally] = field(default_factory=list)

    def of(self, spender: Spender) -> list[Tally]:
        """The limits a spender's debits count against."""
        subjects = spender.subjects()
        return [
            tally for tally in self.tallies if (tally.limit.scope, tally.limit.subject) in subjects
        ]

    def check_member(self, member: str | None) -> None:
        if member is not None and member not in self.members:
            raise MemberNotFound(self.account_id, member)

    def tightest(self, spender: Spender) -> Tally | None:
        """The spender's hard limit that leaves least (None: no hard limit applies)."""
        hard = [tally for tally in self.of(spender) if tally.limit.mode == "hard"]
        return min(hard, key=Tally.left, default=None)

    def check(self, spender: Spender, required: int) -> None:
        """Refuse ``required`` more spent or held past any hard limit of the spender."""
        for tally in self.of(spender):
            if tally.limit.mode == "hard" and tally.left() < required:
                raise LimitReached(tally, required)

    def move(self, spender: Spender, *, spent: int = 0, held: int = 0) -> None:
        """Count what the spender spent (and what its holds now reserve more or less)."""
        for tally in self.of(spender):
            tally.spent += spent
            tally.held += held

    def changed(self) -> Iterable[Tally]:
        """The tallies whose window's spend this batch changed."""
        return (tally for tally in self.tallies if tally.spent != tally.read)


class LimitWarning(NamedTuple):
    """A window's spend has reached ``percent`` of its limit (``tally`` as the batch that
    reached it leaves it): sent once per window and percentage."""

    tally: Tally
    percent: int


class Counted(NamedTuple):
    """A limit's latest window that started by the batch's instant (or by the limit's
    ``since``, should a clock running ahead have set it later), as stored."""

    limit_id: str
    start: datetime
    spent: int
    warned: int


class HeldBy(NamedTuple):
    """What an account's open, unexpired holds for one spender reserve."""

    account_id: str
    member: str | None
    app: str
    key: str | None
    amount: int


@dataclass(slots=True)
class StoredControls:
    """What a batch reads of its accounts' spend controls, in the read that follows their
    lock: the members it names that exist, every limit, each limit's latest window, and
    what open holds reserve by spender."""

    members: list[tuple[str, str]] = field(default_factory=list)  # (account, member)
    limits: list[SpendLimit] = field(default_factory=list)
    counted: list[Counted] = field(default_factory=list)
    held: list[HeldBy] = field(default_factory=list)

    def by_account(
        self, zones: Mapping[str, str | None], now: datetime
    ) -> dict[str, AccountLimits]:
        """The members and limits of the accounts in ``zones`` (each with its time zone),
        each limit with its current window's spend (a stored window that is not the
        current one counts nothing: the current one starts at zero) and what the
        subject's open holds reserve."""
        found = {account_id: AccountLimits(account_id, set()) for account_id in zones}
        for account_id, member in self.members:
            found[account_id].members.add(member)
        latest = {counted.limit_id: counted for counted in self.counted}
        calendars: dict[tuple[Period, str], Window | None] = {}  # the same for many limits
        for limit in self.limits:
            zone = zones[limit.account_id] or "UTC"
            key = (limit.period, zone)
            if key not in calendars:
                calendars[key] = calendar_window(limit.period, now, ZoneInfo(zone))
            window = since_set(calendars[key], limit.since)
            stored = latest.get(limit.id)
            if stored is None or stored.start != window.start:
                stored = Counted(limit.id, window.start, spent=0, warned=0)
            reserved = sum(
                held.amount
                for held in self.held
                if held.account_id == limit.account_id and limit.subject == _subject(held, limit)
            )
            found[limit.account_id].tallies.append(
                Tally(
                    limit,
                    window,
                    spent=stored.spent,
                    held=reserved,
                    read=stored.spent,
                    warned=stored.warned,
                )
            )
        return found


def _subject(held: HeldBy, limit: SpendLimit) -> str | None:
    """Who, of ``held``'s spender, ``limit`` caps ('' for the wallet: every spender)."""
    if limit.scope == "wallet":
        return ""
    return {"member": held.member, "app": held.app, "key": held.key}[limit.scope]
